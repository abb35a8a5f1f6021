"""The one kind of error a user can fix."""
from __future__ import annotations


class UserError(ValueError):
    """A mistake the user can fix (a flag, a folder, a file, a track id): the command shows its message as one
    line naming the thing and exits with 2. Any other exception is a programming error and keeps its traceback.
    (A ``ValueError`` too, so code that validated values before still catches it.)"""
