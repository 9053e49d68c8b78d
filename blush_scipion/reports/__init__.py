"""Plots of what the engine wrote, as matplotlib drawings: shared by the viewers (Tk) and the
protocols and demo (PNG files). No Scipion import."""
