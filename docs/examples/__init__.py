"""Executable examples of the litestar_db guide; ``tests/test_docs_examples.py`` runs every one of them."""
