"""The audio dubprep is trained, tuned and measured on: Debian packages, split so no result is judged on what shaped it."""
