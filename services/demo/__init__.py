"""`sigrelay demo` and the end-to-end benchmark: the whole system, driven from outside."""
