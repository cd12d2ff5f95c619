"""The relational store: SQLAlchemy tables, engines and sessions, Alembic migrations, and the
versioned label store (`versions`). Import the submodule you need; nothing happens at import.
"""
