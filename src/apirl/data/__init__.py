"""Gorilla APIBench (Hugging Face part): records, API database, questions, splits and the prompt format."""
