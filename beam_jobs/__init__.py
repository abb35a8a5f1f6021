"""Apache Beam jobs (ingest, embed) and the pure audio and catalogue code they run."""
