# One training job per experiment: results/<experiment>/ (weights of every model, metrics, provenance).


rule train:
    output:
        run="results/{experiment}/run.npz",
        meta="results/{experiment}/meta.json",
        metrics="results/{experiment}/metrics.csv",
        cells="results/{experiment}/cells.csv",
        timings="results/{experiment}/timings.json",
    params:
        spec=experiment_spec,
        seed=config["seed"],
        device=DEVICE,
    log:
        "logs/train/{experiment}.log",
    benchmark:
        "benchmarks/train/{experiment}.tsv"
    conda:
        "../../environment.yml"
    threads: train_threads
    resources:
        mem_mb=train_mem_mb,
        runtime=train_runtime,
        gpu=1,
    # the config name (provenance, not a rerun trigger) comes from TMS_CONFIG_NAME: see common.smk
    shell:
        "tms train {wildcards.experiment:q} --spec {params.spec:q} --seed {params.seed} "
        "--device {params.device} --threads {threads} "
        "--out results/{wildcards.experiment:q} > {log:q} 2>&1"
