"""The study's side: cohort tables (:mod:`.cohort`), its statistics (:mod:`.statistics`),
Table 2 and the other study tables (:mod:`.cohort_stats`) and the SIMULATED reference
cohort (:mod:`.reference_cohort`). Reads profiles as tables; knows nothing of FCS files."""
