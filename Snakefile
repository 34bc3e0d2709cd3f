# nanorecon: raw tilt series and liquid-cell movies → per-particle atomic models.
# Thin top level: configuration, validation, rule modules and the `all` target.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/ingest.smk"
include: "workflow/rules/reconstruct.smk"
include: "workflow/rules/brownian.smk"
include: "workflow/rules/atoms.smk"
include: "workflow/rules/report.smk"


localrules:
    all,


rule all:
    input:
        all_outputs(),
        brownian_tables,
        refinement_figure_targets,
    default_target: True
