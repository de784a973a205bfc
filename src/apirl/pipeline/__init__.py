"""`apirl run`: every stage of the method in order, each skipped when its manifest says it is up to date."""
