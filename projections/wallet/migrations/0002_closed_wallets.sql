-- A closed wallet (WalletClosed) keeps its row and ledger; closed_at says since when.
ALTER TABLE wallets ADD COLUMN closed_at timestamptz;
