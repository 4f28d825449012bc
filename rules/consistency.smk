# Rules of the consistency study (figures are appended to FIGURES).
