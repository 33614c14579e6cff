"""Training code for the shipped models (run by ``bmpipe train ...``; never at analysis time)."""
