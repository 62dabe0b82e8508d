"""twofold.eval: clinical validation of secure inference (``twofold eval``).

Datasets (CheXpert, NIH ChestX-ray14, plain CSV) → plaintext and secure runs with a resumable
results log → DeLong AUROC, TOST, KS, Bland–Altman → report.md/html, figures, summary.json.
See the "Clinical validation" section of docs/ARCHITECTURE.md.
"""
