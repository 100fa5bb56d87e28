from ata.regime.service import main

main()
