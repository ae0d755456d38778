//! Grafana's dashboard JSON model and provisioning files, as typed structs: the generator
//! fills them in, serde writes them. Only the fields meshkit sets are modelled; Grafana fills
//! in the rest with its defaults when it loads the file.

use std::collections::BTreeMap;

use serde::Serialize;

/// The dashboard schema version these files are written for (Grafana 10–12 read it).
pub const SCHEMA_VERSION: u32 = 39;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Dashboard {
    pub uid: String,
    pub title: String,
    pub description: String,
    pub tags: Vec<String>,
    pub timezone: String,
    pub schema_version: u32,
    pub version: u32,
    pub editable: bool,
    pub refresh: String,
    pub time: TimeRange,
    pub templating: Templating,
    pub panels: Vec<Panel>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TimeRange {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Templating {
    pub list: Vec<Variable>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Variable {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub label: String,
    pub query: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multi: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub include_all: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub all_value: Option<String>,
    pub current: Current,
    pub options: Vec<Current>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Current {
    pub selected: bool,
    pub text: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DataSourceRef {
    #[serde(rename = "type")]
    pub kind: String,
    pub uid: String,
}

impl DataSourceRef {
    /// The dashboard's `datasource` variable.
    pub fn variable() -> DataSourceRef {
        DataSourceRef {
            kind: "prometheus".into(),
            uid: "${datasource}".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Panel {
    pub id: u32,
    #[serde(rename = "type")]
    pub kind: PanelKind,
    pub title: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub grid_pos: GridPos,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datasource: Option<DataSourceRef>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<Target>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field_config: Option<FieldConfig>,
    /// Rows only: whether the row starts folded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collapsed: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PanelKind {
    Row,
    Timeseries,
    Table,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct GridPos {
    pub h: u32,
    pub w: u32,
    pub x: u32,
    pub y: u32,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub ref_id: String,
    pub datasource: DataSourceRef,
    pub expr: String,
    pub legend_format: String,
    /// Table panels: one instant value per series, as a table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instant: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FieldConfig {
    pub defaults: FieldDefaults,
    pub overrides: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FieldDefaults {
    pub unit: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// `provisioning/datasources/*.yaml`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasourceProvisioning {
    pub api_version: u32,
    pub datasources: Vec<Datasource>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Datasource {
    pub name: String,
    pub uid: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub access: String,
    pub url: String,
    pub is_default: bool,
    pub json_data: BTreeMap<String, String>,
}

/// `provisioning/dashboards/*.yaml`: a file provider.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DashboardProvisioning {
    pub api_version: u32,
    pub providers: Vec<DashboardProvider>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DashboardProvider {
    pub name: String,
    pub org_id: u32,
    pub folder: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub disable_deletion: bool,
    pub update_interval_seconds: u32,
    pub allow_ui_updates: bool,
    pub options: ProviderOptions,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderOptions {
    pub path: String,
    pub folders_from_files_structure: bool,
}
