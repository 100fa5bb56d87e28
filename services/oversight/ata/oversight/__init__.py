"""ata.oversight: an LLM (or a deterministic rule set) reviews trading decisions and can veto them; it never originates one."""
