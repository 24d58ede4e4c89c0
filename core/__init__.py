"""Shared math and building blocks: the book's chapters 1-15 as pure JAX functions.

Modules are imported explicitly (`from core import losses`); nothing is re-exported here, so
importing one part never pays for the others.
"""
