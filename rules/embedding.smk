# Rules of the embedding study (figures are appended to FIGURES).
