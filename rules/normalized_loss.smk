# Rules of the normalized_loss study (figures are appended to FIGURES).
