"""The journal's pure logic: record extraction, offset coverage, state folding, recovery planning."""
