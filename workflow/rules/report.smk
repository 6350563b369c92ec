# Findings -> report (TeX -> PDF, and HTML) -> frozen artifact.


rule findings:
    input:
        expand("results/claims/{figure}.json", figure=FIGURES),
    output:
        FINDINGS_JSON,
    log:
        "logs/findings.log",
    benchmark:
        "benchmarks/findings.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        figures=FIGURES,
    shell:
        "tms findings --results results --figures {params.figures} --out {output:q} > {log:q} 2>&1"


rule report:
    input:
        findings=FINDINGS_JSON,
        figures=expand("figures/{figure}.{ext}", figure=FIGURES, ext=["pdf", "png", "csv"]),
        provenance=expand("results/provenance/{figure}.json", figure=FIGURES),
        config=RESOLVED_CONFIG,
        robustness=[ROBUSTNESS_JSON] if ROBUSTNESS else [],
    output:
        tex=FINDINGS_TEX,
        pdf=report(FINDINGS_PDF, caption="../report/findings.rst", category="Report"),
        html=report(FINDINGS_HTML, caption="../report/findings.rst", category="Report"),
    params:
        robustness=f"--robustness {ROBUSTNESS_JSON}" if ROBUSTNESS else "",
    log:
        "logs/report.log",
    benchmark:
        "benchmarks/report.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "tms report --findings {input.findings:q} --figures figures --results results "
        "--config {input.config:q} --out report/build {params.robustness} > {log:q} 2>&1"


rule freeze:
    input:
        rules.report.output,
        config=RESOLVED_CONFIG,
        robustness=[ROBUSTNESS_JSON] if ROBUSTNESS else [],
    output:
        FROZEN_ARCHIVE,
    log:
        "logs/freeze.log",
    benchmark:
        "benchmarks/freeze.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "tms freeze --report report/build --figures figures --results results --config {input.config:q} "
        "--out report/build > {log:q} 2>&1"
