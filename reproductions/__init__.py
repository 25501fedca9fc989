"""Reproductions of meta-learning papers: a small shared core plus one subpackage per paper."""
