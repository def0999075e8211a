"""The `kimberley` command-line interface: thin, calls ledger/ and node/."""
