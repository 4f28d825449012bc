# Functions of rules/consistency.smk (kept apart from the rules, as `snakemake --lint` asks); included just before it.


def _cons_index_scores(wc):
    plan = cons_plan.index_plan(CONS)
    if wc.name not in plan:
        raise WorkflowError(f"{wc.name}: no index list of the consistency study derives this dataset")
    return cons_plan.scores_path(plan[wc.name]["parent"])



def _cons_combos(recipe, dataset, arch):
    return {(r.optimizer, r.loss) for r in runs_of("consistency", recipe=recipe, dataset=dataset, arch=arch)}
