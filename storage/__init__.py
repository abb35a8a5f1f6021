"""Where every wavelist file is read and written: local paths or gs://, the same calls everywhere (``files``)."""
