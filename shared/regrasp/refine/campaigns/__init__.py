"""A benchmark campaign's options (`config`) and its report (`report`): the paper's Table I
and figures 4–8 from the stored metrics. The campaign's runs are driven by
`regrasp.workflows.campaigns`."""
