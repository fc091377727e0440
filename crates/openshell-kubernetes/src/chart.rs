//! The gateway's Helm chart. Its files are written by hand under
//! `deploy/helm/openshell-gateway/` (templates cannot be typed objects: their
//! values are filled in at install time) and carried here as they are, so that
//! `openshell kubernetes manifests --out` writes them with the rest.

/// Where the chart goes, relative to the output directory.
pub const DIR: &str = "helm/openshell-gateway";

macro_rules! chart_files {
    ($($path:literal),* $(,)?) => {
        /// Every file of the chart: its path in the chart, and its text.
        pub const FILES: &[(&str, &str)] =
            &[$(($path, include_str!(concat!("../../../deploy/helm/openshell-gateway/", $path)))),*];
    };
}

chart_files!(
    "Chart.yaml",
    "README.md",
    "values.yaml",
    "templates/serviceaccount.yaml",
    "templates/role.yaml",
    "templates/rolebinding.yaml",
    "templates/pvc.yaml",
    "templates/service.yaml",
    "templates/deployment.yaml",
);
