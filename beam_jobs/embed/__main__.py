"""``python -m beam_jobs.embed``: the embed job (``wavelist embed``)."""
import logging

from beam_jobs.embed.job import run

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    run()
