# lossatlas: the five papers' experiments and figures as one DAG.
# The top level stays cheap (it is re-parsed inside every cluster job): config validation and the run grid
# are plain Python (lossatlas.config); nothing here imports torch or numpy.
import sys

sys.path.insert(0, str(Path(workflow.basedir) / "workflow_scripts"))

from lossatlas.config import ConfigError, validate_config

# With --configfile, that file is the whole config (paper scale does not merge into the default study).
if not workflow.overwrite_configfiles:

    configfile: str(Path(workflow.basedir) / "config.yaml")


# The one validation: schema (with its defaults filled in) and cross-references, errors by key path.
try:
    validate_config(config)
except ConfigError as err:
    raise WorkflowError(str(err)) from None


include: "rules/common.smk"
include: "rules/functions/data.smk"
include: "rules/data.smk"
include: "rules/functions/train.smk"
include: "rules/train.smk"
include: "rules/functions/universality.smk"
include: "rules/universality.smk"
include: "rules/functions/consistency.smk"
include: "rules/consistency.smk"
include: "rules/functions/normalized_loss.smk"
include: "rules/normalized_loss.smk"
include: "rules/functions/loss_patterns.smk"
include: "rules/loss_patterns.smk"
include: "rules/functions/embedding.smk"
include: "rules/embedding.smk"
include: "rules/functions/audit.smk"
include: "rules/audit.smk"
include: "rules/report.smk"


report: "report/workflow.rst"


localrules:
    all_figures,


rule all_figures:
    input:
        FIGURES,
        rules.claims.output,
    default_target: True
