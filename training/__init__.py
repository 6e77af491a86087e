"""Lathe's training side: the job spec, data, engine, worker and job manager. No gradio here."""
