"""train tests."""
