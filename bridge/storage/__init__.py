"""The database: SQLite or PostgreSQL behind one API, and the numbered migrations."""
