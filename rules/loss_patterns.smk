# Rules of the loss_patterns study (figures are appended to FIGURES).
