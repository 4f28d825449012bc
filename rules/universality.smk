# Rules of the universality study (figures are appended to FIGURES).
