"""Where every wavelist file is read and written, local or gs://: the same calls everywhere (``files``, built from
``paths`` and ``parquet``), and the text files a user gives, read in bounded memory (``text_files``)."""
