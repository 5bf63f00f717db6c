"""Operations tools behind the CLI: migrate, verify (the accounting check) and health."""
