"""The base of every config model, kept apart so stage configs can import it without cycles."""

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Configs are data, validated at load: unknown keys are errors, assignments are re-validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
