"""starling_lib: a small, tested companion to Starling-7B (Nectar, K-wise RMs, APA, evaluation).

Stages live in their own modules and import downward only:
data / models / losses / config at the bottom; judge, reward, policy above them;
bias and evaluation above those; cli and notebooks on top.
"""

__version__ = "0.1.0"
