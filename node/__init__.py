"""The Kimberley Ledger HTTP node (C2SP tlog-tiles, tlog-witness, sync)."""
