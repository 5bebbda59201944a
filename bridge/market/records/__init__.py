"""The marketplace's tables, one module per aggregate: the SQL of market/ lives here."""
