"""The stages of a run, one module each, in pipeline order:

plan -> training_data (probe, critique, refine, direct) -> train -> evaluate (generate + score) -> aggregate
(results.json, manifest.json, report.html). ``harness.pipeline.run`` calls them in turn; each reuses what is
stored only when the fingerprint of what made it matches.
"""
