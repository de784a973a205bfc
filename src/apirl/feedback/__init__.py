"""AI feedback: yes/no questions about a generated snippet, answered by judges (tools, LLMs) and cached."""
