"""Train the shipped default TFR model on the SIMULATED reference cohort, and print the
metrics that go into ``src/immunoprofile/predict/models/MODEL_CARD.md``.

    python tools/train_default_model.py

Writes ``src/immunoprofile/predict/models/tfr_default.json``.
``tests/predict/test_predict.py`` retrains and checks the shipped file is exactly what this
script produces, and that the model card quotes the metrics ``evaluate`` gives.
"""
from __future__ import annotations

from pathlib import Path

from immunoprofile.predict.evaluation import evaluate
from immunoprofile.predict.features import IMMUNE_FEATURES
from immunoprofile.predict.model import train
from immunoprofile.predict.model_file import DEFAULT_MODEL, save_model
from immunoprofile.study.reference_cohort import SIMULATED_NOTE, reference_cohort

#: Regularisation of the default model (inverse strength, standardised features).
DEFAULT_C = 1.0


def main() -> None:
    cohort = reference_cohort()
    model = train(cohort, IMMUNE_FEATURES, C=DEFAULT_C, description=SIMULATED_NOTE)
    out = Path(__file__).resolve().parents[1] / "src/immunoprofile/predict/models" / DEFAULT_MODEL
    save_model(model, out)
    print(f"wrote {out}")
    result = evaluate(cohort, IMMUNE_FEATURES, C=DEFAULT_C)
    print(result.settings)
    print(result.summary.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print(result.calibration.to_string(index=False, float_format=lambda x: f"{x:.3f}"))


if __name__ == "__main__":
    main()
