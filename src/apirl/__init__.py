"""apirl: teach small code LLMs to write correct API calls with RL from AI feedback."""

__version__ = "0.1.0"
