//! The SAM templates under `infra/` against the workspace and against themselves.
//!
//! - every Lambda binary of the workspace (the `[[bin]]`s of the packages under `functions/`) has
//!   a function in the templates, and every function in the templates is such a binary;
//! - the environment the templates set names only Lasso settings and includes the required ones;
//! - timeouts fit together (API Gateway's 30 s, the one-minute ticks, the queues' visibility);
//! - the dedicated runner groups work as configuration: a small evaluator of CloudFormation's
//!   intrinsic functions deploys the parent template with several parameter sets (the example
//!   deployment in `infra/examples/` among them) and checks which groups exist, the queue map the
//!   functions get, and that the Rules and parameter constraints refuse bad sets;
//! - the OpenSearch ISM policy covers the indices the log sink writes.
//!
//! `sam validate --lint` and cfn-lint check the templates themselves (`infra/validate`, run by
//! `make test`); this test needs no tools and no services.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use lasso_services::config::SETTINGS;
use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value, json};

/// Settings every function needs (no default in `SETTINGS`, required at start-up).
const REQUIRED_SETTINGS: &[&str] = &[
    "LASSO_DATABASE_URL",
    "LASSO_ENCRYPTION_KEY",
    "LASSO_SCRIPT_STORE",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

// ------------------------------------------------------------------------------ YAML reading

/// A YAML node as CloudFormation reads it: the short forms (`!Ref X`, `!GetAtt A.B`,
/// `!Sub "..."`, `!If [...]`) become their long forms (`{"Ref": "X"}`, `{"Fn::GetAtt": ["A", "B"]}`).
struct Cfn(Value);

/// The node without its tag; its children are [`Cfn`] again.
struct Untagged(Value);

impl<'de> Deserialize<'de> for Cfn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let serde_saphyr::Tagged(Untagged(value), tag) =
            serde_saphyr::Tagged::<Untagged>::deserialize(d)?;
        match tag {
            Some(tag) if !tag.starts_with("tag:yaml.org,2002:") => {
                long_form(&tag, value).map(Cfn).map_err(D::Error::custom)
            }
            _ => Ok(Cfn(value)),
        }
    }
}

fn long_form(tag: &str, value: Value) -> Result<Value, String> {
    let name = tag
        .strip_prefix('!')
        .ok_or_else(|| format!("unexpected YAML tag {tag}"))?;
    Ok(match name {
        "Ref" => json!({ "Ref": value }),
        "Condition" => json!({ "Condition": value }),
        "GetAtt" => match value {
            Value::String(s) => {
                let (resource, attribute) = s
                    .split_once('.')
                    .ok_or_else(|| format!("!GetAtt {s}: expected Resource.Attribute"))?;
                json!({ "Fn::GetAtt": [resource, attribute] })
            }
            other => json!({ "Fn::GetAtt": other }),
        },
        "Sub" | "If" | "Join" | "Split" | "Select" | "Equals" | "Not" | "And" | "Or"
        | "FindInMap" | "Base64" | "Cidr" | "GetAZs" | "ImportValue" | "Contains"
        | "ToJsonString" | "Length" => {
            let mut m = Map::new();
            m.insert(format!("Fn::{name}"), value);
            Value::Object(m)
        }
        _ => return Err(format!("unknown CloudFormation tag {tag}")),
    })
}

impl<'de> Deserialize<'de> for Untagged {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Untagged;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a YAML node")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Untagged, E> {
                Ok(Untagged(Value::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Untagged, E> {
                Ok(Untagged(Value::from(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Untagged, E> {
                Ok(Untagged(Value::from(v)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Untagged, E> {
                Ok(Untagged(Value::from(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Untagged, E> {
                Ok(Untagged(Value::String(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Untagged, E> {
                Ok(Untagged(Value::String(v)))
            }
            fn visit_unit<E>(self) -> Result<Untagged, E> {
                Ok(Untagged(Value::Null))
            }
            fn visit_none<E>(self) -> Result<Untagged, E> {
                Ok(Untagged(Value::Null))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Untagged, D::Error> {
                Cfn::deserialize(d).map(|Cfn(v)| Untagged(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Untagged, A::Error> {
                let mut items = Vec::new();
                while let Some(Cfn(item)) = seq.next_element::<Cfn>()? {
                    items.push(item);
                }
                Ok(Untagged(Value::Array(items)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Untagged, A::Error> {
                let mut out = Map::new();
                while let Some(key) = map.next_key::<String>()? {
                    let Cfn(value) = map.next_value::<Cfn>()?;
                    out.insert(key, value);
                }
                Ok(Untagged(Value::Object(out)))
            }
        }
        d.deserialize_any(V)
    }
}

fn load(relative: &str) -> Value {
    let path = repo_root().join(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let Cfn(value) = serde_saphyr::from_str::<Cfn>(&text)
        .unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()));
    value
}

fn parent() -> Value {
    load("infra/template.yaml")
}

fn runner_group() -> Value {
    load("infra/runner-group.yaml")
}

fn resources(t: &Value) -> &Map<String, Value> {
    t["Resources"].as_object().expect("Resources")
}

/// The template's `AWS::Serverless::Function` resources, by logical id.
fn functions(t: &Value) -> Vec<(&str, &Value)> {
    resources(t)
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
        .map(|(k, r)| (k.as_str(), r))
        .collect()
}

/// A function's property, or the template's `Globals.Function` one.
fn property<'a>(t: &'a Value, function: &'a Value, name: &str) -> Option<&'a Value> {
    function["Properties"]
        .get(name)
        .or_else(|| t.pointer(&format!("/Globals/Function/{name}")))
}

/// The environment a function gets: `Globals.Function.Environment` overlaid with its own.
fn environment(t: &Value, function: &Value) -> Map<String, Value> {
    let mut env = t
        .pointer("/Globals/Function/Environment/Variables")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if let Some(own) = function
        .pointer("/Properties/Environment/Variables")
        .and_then(Value::as_object)
    {
        env.extend(own.clone());
    }
    env
}

/// The binary a template function runs: its CodeUri is `../target/lambda/<binary>/`, where
/// `make build-lambda` (cargo lambda build --lambda-dir target/lambda) puts `<binary>/bootstrap`.
fn binary_of(code_uri: &str) -> Option<&str> {
    code_uri
        .strip_prefix("../target/lambda/")?
        .strip_suffix('/')
        .filter(|b| !b.is_empty() && !b.contains('/'))
}

// ------------------------------------------------------------------------------ the workspace

/// The `[[bin]]` targets of the workspace packages under `functions/`, from `cargo metadata`.
fn workspace_lambda_binaries() -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(repo_root())
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
    let functions_dir = repo_root().join("functions");
    let mut bins = BTreeSet::new();
    for package in metadata["packages"].as_array().expect("packages") {
        let manifest = Path::new(package["manifest_path"].as_str().expect("manifest_path"));
        if !manifest.starts_with(&functions_dir) {
            continue;
        }
        for target in package["targets"].as_array().expect("targets") {
            if target["kind"]
                .as_array()
                .is_some_and(|k| k.contains(&json!("bin")))
            {
                bins.insert(target["name"].as_str().expect("target name").to_string());
            }
        }
    }
    bins
}

#[test]
fn every_workspace_function_has_a_template_entry_and_back() {
    let binaries = workspace_lambda_binaries();
    assert!(
        binaries.len() >= 4,
        "expected the four functions under functions/, found {binaries:?}"
    );

    let mut in_templates: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    for (file, t) in [
        ("infra/template.yaml", parent()),
        ("infra/runner-group.yaml", runner_group()),
    ] {
        for (id, f) in functions(&t) {
            let code_uri = property(&t, f, "CodeUri")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let Some(binary) = binary_of(code_uri) else {
                problems.push(format!(
                    "{file}: {id} has CodeUri {code_uri:?}, expected ../target/lambda/<binary>/"
                ));
                continue;
            };
            in_templates
                .entry(binary.to_string())
                .or_default()
                .push(format!("{file}: {id}"));
            for (name, want) in [("Handler", "bootstrap"), ("Runtime", "provided.al2023")] {
                let got = property(&t, f, name);
                if got != Some(&json!(want)) {
                    problems.push(format!("{file}: {id} has {name} {got:?}, expected {want}"));
                }
            }
            let arch = property(&t, f, "Architectures");
            if arch != Some(&json!([{ "Ref": "Architecture" }])) {
                problems.push(format!(
                    "{file}: {id} has Architectures {arch:?}, expected [!Ref Architecture]"
                ));
            }
        }
    }
    for b in &binaries {
        if !in_templates.contains_key(b) {
            problems.push(format!(
                "the workspace function `{b}` (functions/) has no AWS::Serverless::Function in infra/template.yaml or infra/runner-group.yaml"
            ));
        }
    }
    for (b, entries) in &in_templates {
        if !binaries.contains(b) {
            problems.push(format!(
                "{} runs `{b}`, which is not a binary of a package under functions/",
                entries.join(", ")
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn environments_name_known_settings_and_the_required_ones() {
    let known: BTreeSet<&str> = SETTINGS.iter().map(|s| s.name).collect();
    let mut problems = Vec::new();
    for (file, t) in [
        ("infra/template.yaml", parent()),
        ("infra/runner-group.yaml", runner_group()),
    ] {
        for (id, f) in functions(&t) {
            let env = environment(&t, f);
            for name in env.keys() {
                if !known.contains(name.as_str()) {
                    problems.push(format!(
                        "{file}: {id} sets {name}, which is not a Lasso setting"
                    ));
                }
            }
            for name in REQUIRED_SETTINGS.iter().chain(&["LASSO_RUNNER_QUEUE_URL"]) {
                if !env.contains_key(*name) {
                    problems.push(format!("{file}: {id} does not set {name}"));
                }
            }
            // Secrets come from Secrets Manager, never as literals in the template.
            for name in ["LASSO_DATABASE_URL", "LASSO_ENCRYPTION_KEY"] {
                let text = env.get(name).map(Value::to_string).unwrap_or_default();
                if !text.contains("{{resolve:secretsmanager:") {
                    problems.push(format!(
                        "{file}: {id}: {name} is not a Secrets Manager dynamic reference"
                    ));
                }
            }
            if env.get("LASSO_TASK_TRANSPORT") != Some(&json!("sqs")) {
                problems.push(format!("{file}: {id}: LASSO_TASK_TRANSPORT is not sqs"));
            }
        }
    }
    let t = runner_group();
    let (_, runner) = functions(&t)[0];
    let env = environment(&t, runner);
    assert_eq!(env["LASSO_RUNNER_GROUP"], json!({ "Ref": "GroupName" }));
    assert_eq!(env["LASSO_RUNNER_QUEUE_URL"], json!({ "Ref": "Queue" }));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn timeouts_fit_together() {
    let t = parent();
    let r = resources(&t);
    let timeout = |id: &str| {
        r[id]["Properties"]["Timeout"]
            .as_u64()
            .unwrap_or_else(|| panic!("{id} has a literal Timeout"))
    };
    let integration_ms = r["ApiIntegration"]["Properties"]["TimeoutInMillis"]
        .as_u64()
        .expect("ApiIntegration TimeoutInMillis");
    assert!(
        integration_ms <= 30_000,
        "HTTP APIs end requests after 30 s"
    );
    assert!(
        timeout("ApiFunction") * 1000 < integration_ms,
        "the api function should stop before the gateway gives up"
    );
    for id in ["SchedulerFunction", "DispatcherFunction"] {
        assert!(
            timeout(id) < 60,
            "{id} must finish before its next one-minute tick"
        );
        let schedule = &r[id]["Properties"]["Events"]["Tick"];
        assert_eq!(
            schedule["Type"], "Schedule",
            "{id} runs on an EventBridge schedule"
        );
        assert_eq!(schedule["Properties"]["Schedule"], "rate(1 minute)");
    }

    let g = runner_group();
    let allowed: BTreeSet<String> = g["Parameters"]["ScriptTimeout"]["AllowedValues"]
        .as_array()
        .expect("ScriptTimeout AllowedValues")
        .iter()
        .map(|v| v.to_string())
        .collect();
    let table = g["Mappings"]["Timeouts"].as_object().expect("Timeouts");
    assert_eq!(
        allowed,
        table.keys().cloned().collect::<BTreeSet<_>>(),
        "every ScriptTimeout has a row in Mappings.Timeouts"
    );
    for (script, row) in table {
        let script: u64 = script.parse().expect("numeric key");
        let function = row["Function"].as_u64().expect("Function");
        let visibility = row["Visibility"].as_u64().expect("Visibility");
        assert!(
            function >= script + 60,
            "runner timeout {function} s leaves no margin over the {script} s script deadline"
        );
        assert!(function <= 900, "Lambda's limit is 900 s");
        assert!(
            visibility >= 6 * function,
            "visibility {visibility} s is under 6 x the {function} s runner timeout"
        );
    }
    let parent_allowed: BTreeSet<String> = t["Parameters"]["ScriptTimeout"]["AllowedValues"]
        .as_array()
        .expect("parent ScriptTimeout AllowedValues")
        .iter()
        .map(|v| v.to_string())
        .collect();
    assert_eq!(parent_allowed, allowed);

    let (_, runner) = functions(&g)[0];
    let sqs = &runner["Properties"]["Events"]["Tasks"];
    assert_eq!(sqs["Type"], "SQS");
    assert_eq!(
        sqs["Properties"]["FunctionResponseTypes"],
        json!(["ReportBatchItemFailures"])
    );
    assert!(
        g.pointer("/Resources/Queue/Properties/RedrivePolicy/deadLetterTargetArn")
            .is_some(),
        "the runner queue has a dead-letter queue"
    );
}

#[test]
fn ism_policy_covers_the_log_indices() {
    let path = repo_root().join("infra/opensearch/ism-policy.json");
    let policy: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read the ISM policy"))
            .expect("the ISM policy is JSON");
    let prefix = SETTINGS
        .iter()
        .find(|s| s.name == "LASSO_OPENSEARCH_INDEX_PREFIX")
        .and_then(|s| s.default)
        .expect("LASSO_OPENSEARCH_INDEX_PREFIX has a default");
    let patterns: BTreeSet<&str> = policy["policy"]["ism_template"]
        .as_array()
        .expect("ism_template")
        .iter()
        .flat_map(|t| t["index_patterns"].as_array().expect("index_patterns"))
        .filter_map(Value::as_str)
        .collect();
    let want = [
        format!("{prefix}-operations-*"),
        format!("{prefix}-messages-*"),
    ];
    for p in &want {
        assert!(
            patterns.contains(p.as_str()),
            "the ISM policy does not cover {p}"
        );
    }
    let states = policy["policy"]["states"].as_array().expect("states");
    let deletes = states.iter().any(|s| {
        s["actions"]
            .as_array()
            .is_some_and(|a| a.iter().any(|a| a.get("delete").is_some()))
    });
    assert!(deletes, "the ISM policy deletes old indices");
    let default_state = policy["policy"]["default_state"]
        .as_str()
        .expect("default_state");
    assert!(states.iter().any(|s| s["name"] == default_state));
}

// ------------------------------------------------------------------------------ evaluating

/// One deployment of the parent template: parameter values (defaults filled in), the Rules
/// checked, conditions evaluated, and nested stack parameters checked against runner-group.yaml.
struct Deployment {
    template: Value,
    params: BTreeMap<String, Value>,
}

#[derive(Debug)]
struct Refused(String);

impl Deployment {
    fn new(given: &[(&str, &str)]) -> Result<Self, Refused> {
        let template = parent();
        let declared = template["Parameters"].as_object().expect("Parameters");
        for (k, _) in given {
            if !declared.contains_key(*k) {
                return Err(Refused(format!("unknown parameter {k}")));
            }
        }
        let given: BTreeMap<&str, &str> = given.iter().copied().collect();
        let params = resolve_parameters(declared, |name| given.get(name).map(|v| v.to_string()))?;
        let d = Deployment { template, params };
        d.check_rules()?;
        // Every runner group the deployment creates gets valid parameters.
        let child = runner_group();
        let child_params = child["Parameters"].as_object().expect("child Parameters");
        for (id, r) in d.resources() {
            if r["Type"] != "AWS::Serverless::Application" {
                continue;
            }
            let passed = r["Properties"]["Parameters"]
                .as_object()
                .expect("Parameters");
            let mut values = BTreeMap::new();
            for (k, v) in passed {
                let v = d.eval(v).map_err(|e| Refused(format!("{id}.{k}: {e}")))?;
                values.insert(
                    k.clone(),
                    scalar(&v).map_err(|e| Refused(format!("{id}.{k}: {e}")))?,
                );
            }
            resolve_parameters(child_params, |name| values.get(name).cloned())
                .map_err(|Refused(e)| Refused(format!("{id}: {e}")))?;
        }
        Ok(d)
    }

    /// The resources this deployment creates (their Condition holds).
    fn resources(&self) -> Vec<(&str, &Value)> {
        resources(&self.template)
            .iter()
            .filter(|(_, r)| match r["Condition"].as_str() {
                Some(c) => self.condition(c).expect("condition evaluates"),
                None => true,
            })
            .map(|(k, r)| (k.as_str(), r))
            .collect()
    }

    fn has(&self, id: &str) -> bool {
        self.resources().iter().any(|(k, _)| *k == id)
    }

    fn check_rules(&self) -> Result<(), Refused> {
        let Some(rules) = self.template["Rules"].as_object() else {
            return Ok(());
        };
        for (name, rule) in rules {
            if let Some(c) = rule.get("RuleCondition")
                && self.eval(c).map_err(Refused)? != Value::Bool(true)
            {
                continue;
            }
            for a in rule["Assertions"].as_array().expect("Assertions") {
                if self.eval(&a["Assert"]).map_err(Refused)? != Value::Bool(true) {
                    return Err(Refused(format!(
                        "rule {name}: {}",
                        a["AssertDescription"].as_str().unwrap_or("")
                    )));
                }
            }
        }
        Ok(())
    }

    fn condition(&self, name: &str) -> Result<bool, String> {
        let c = self
            .template
            .pointer(&format!("/Conditions/{name}"))
            .ok_or_else(|| format!("no condition {name}"))?;
        match self.eval(c)? {
            Value::Bool(b) => Ok(b),
            other => Err(format!("condition {name} is {other}")),
        }
    }

    /// What a resource attribute stands for in these checks: a nested group's GroupName output
    /// is the name passed to it, a queue URL a made-up one naming the group's slot.
    fn get_att(&self, resource: &str, attribute: &str) -> Result<Value, String> {
        let r = resources(&self.template)
            .get(resource)
            .ok_or_else(|| format!("GetAtt of unknown resource {resource}"))?;
        if let Some(c) = r["Condition"].as_str()
            && !self.condition(c)?
        {
            return Err(format!(
                "GetAtt {resource}.{attribute}: {resource} is not created"
            ));
        }
        Ok(match attribute {
            "Outputs.GroupName" => self.eval(&r["Properties"]["Parameters"]["GroupName"])?,
            "Outputs.QueueUrl" => json!(format!("https://sqs.test/{resource}")),
            "Outputs.QueueArn" => json!(format!("arn:aws:sqs:test:{resource}")),
            _ => json!(format!("<{resource}.{attribute}>")),
        })
    }

    /// Evaluates CloudFormation's intrinsic functions; `AWS::NoValue` is `null` (and drops out
    /// of lists and objects).
    fn eval(&self, v: &Value) -> Result<Value, String> {
        match v {
            Value::Array(items) => Ok(Value::Array(
                items
                    .iter()
                    .map(|i| self.eval(i))
                    .collect::<Result<Vec<_>, _>>()?
                    .into_iter()
                    .filter(|i| !i.is_null())
                    .collect(),
            )),
            Value::Object(m) if m.len() == 1 => {
                let (k, arg) = m.iter().next().expect("one entry");
                self.function(k, arg).unwrap_or_else(|| self.eval_object(m))
            }
            Value::Object(m) => self.eval_object(m),
            other => Ok(other.clone()),
        }
    }

    fn eval_object(&self, m: &Map<String, Value>) -> Result<Value, String> {
        let mut out = Map::new();
        for (k, v) in m {
            let v = self.eval(v)?;
            if !v.is_null() {
                out.insert(k.clone(), v);
            }
        }
        Ok(Value::Object(out))
    }

    fn string(&self, v: &Value) -> Result<String, String> {
        match self.eval(v)? {
            Value::String(s) => Ok(s),
            Value::Number(n) => Ok(n.to_string()),
            other => Err(format!("expected a string, got {other}")),
        }
    }

    fn list(&self, v: &Value) -> Result<Vec<Value>, String> {
        match self.eval(v)? {
            Value::Array(a) => Ok(a),
            other => Err(format!("expected a list, got {other}")),
        }
    }

    fn boolean(&self, v: &Value) -> Result<bool, String> {
        match self.eval(v)? {
            Value::Bool(b) => Ok(b),
            other => Err(format!("expected a condition, got {other}")),
        }
    }

    fn reference(&self, name: &str) -> Result<Value, String> {
        if let Some(p) = self.params.get(name) {
            return Ok(p.clone());
        }
        Ok(match name {
            "AWS::NoValue" => Value::Null,
            "AWS::Region" => json!("us-east-1"),
            "AWS::AccountId" => json!("123456789012"),
            "AWS::Partition" => json!("aws"),
            "AWS::URLSuffix" => json!("amazonaws.com"),
            "AWS::StackName" => json!("lasso"),
            _ if resources(&self.template).contains_key(name) => json!(format!("<{name}>")),
            _ => return Err(format!("Ref to unknown {name}")),
        })
    }

    fn function(&self, name: &str, arg: &Value) -> Option<Result<Value, String>> {
        let args = || arg.as_array().cloned().unwrap_or_default();
        Some(match name {
            "Ref" => self.reference(arg.as_str().unwrap_or_default()),
            "Condition" => self
                .condition(arg.as_str().unwrap_or_default())
                .map(Value::Bool),
            "Fn::Equals" => (|| {
                let a = args();
                Ok(Value::Bool(self.eval(&a[0])? == self.eval(&a[1])?))
            })(),
            "Fn::Not" => self.boolean(&args()[0]).map(|b| Value::Bool(!b)),
            "Fn::And" => args()
                .iter()
                .map(|c| self.boolean(c))
                .collect::<Result<Vec<_>, _>>()
                .map(|b| Value::Bool(b.iter().all(|x| *x))),
            "Fn::Or" => args()
                .iter()
                .map(|c| self.boolean(c))
                .collect::<Result<Vec<_>, _>>()
                .map(|b| Value::Bool(b.iter().any(|x| *x))),
            "Fn::If" => (|| {
                let a = args();
                let c = a[0].as_str().ok_or("Fn::If needs a condition name")?;
                self.eval(if self.condition(c)? { &a[1] } else { &a[2] })
            })(),
            "Fn::Contains" => (|| {
                let a = args();
                Ok(Value::Bool(self.list(&a[0])?.contains(&self.eval(&a[1])?)))
            })(),
            "Fn::Join" => (|| {
                let a = args();
                let sep = self.string(&a[0])?;
                let parts = self
                    .list(&a[1])?
                    .iter()
                    .map(|p| self.string(p))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(json!(parts.join(&sep)))
            })(),
            "Fn::Split" => (|| {
                let a = args();
                let sep = self.string(&a[0])?;
                Ok(json!(
                    self.string(&a[1])?.split(sep.as_str()).collect::<Vec<_>>()
                ))
            })(),
            "Fn::Select" => (|| {
                let a = args();
                let i: usize = self.string(&a[0])?.parse().map_err(|e| format!("{e}"))?;
                self.list(&a[1])?
                    .get(i)
                    .cloned()
                    .ok_or_else(|| format!("Fn::Select index {i} out of range"))
            })(),
            "Fn::GetAtt" => {
                let a = args();
                self.get_att(
                    a[0].as_str().unwrap_or_default(),
                    a[1].as_str().unwrap_or_default(),
                )
            }
            "Fn::Sub" => (|| {
                let (text, vars) = match arg {
                    Value::String(s) => (s.clone(), Map::new()),
                    Value::Array(a) => (
                        a[0].as_str().ok_or("Fn::Sub text")?.to_string(),
                        a[1].as_object().cloned().unwrap_or_default(),
                    ),
                    _ => return Err("Fn::Sub".to_string()),
                };
                let mut out = String::new();
                let mut rest = text.as_str();
                while let Some(start) = rest.find("${") {
                    out.push_str(&rest[..start]);
                    let end = rest[start..].find('}').ok_or("unclosed ${")? + start;
                    let name = &rest[start + 2..end];
                    let value = if let Some(v) = vars.get(name) {
                        self.string(v)?
                    } else if let Some((r, a)) = name.split_once('.') {
                        self.string(&self.get_att(r, a)?)?
                    } else {
                        self.string(&self.reference(name)?)?
                    };
                    out.push_str(&value);
                    rest = &rest[end + 1..];
                }
                out.push_str(rest);
                Ok(json!(out))
            })(),
            _ => return None,
        })
    }

    /// The environment the parent's functions get (Globals), evaluated.
    fn globals_environment(&self) -> Map<String, Value> {
        let env = self
            .template
            .pointer("/Globals/Function/Environment/Variables")
            .expect("Globals environment");
        match self.eval(env).expect("environment evaluates") {
            Value::Object(m) => m,
            other => panic!("environment is {other}"),
        }
    }

    fn runner_queues(&self) -> BTreeMap<String, String> {
        let raw = self.globals_environment()["LASSO_RUNNER_QUEUES"]
            .as_str()
            .expect("LASSO_RUNNER_QUEUES is a string")
            .to_string();
        serde_json::from_str(&raw)
            .unwrap_or_else(|e| panic!("LASSO_RUNNER_QUEUES is not a JSON object ({e}): {raw}"))
    }

    /// Which group slots exist, with the name each one runs.
    fn groups(&self) -> BTreeMap<String, String> {
        self.resources()
            .iter()
            .filter(|(_, r)| r["Type"] == "AWS::Serverless::Application")
            .map(|(id, r)| {
                let name = self
                    .string(&r["Properties"]["Parameters"]["GroupName"])
                    .expect("GroupName");
                (name, id.to_string())
            })
            .collect()
    }
}

fn scalar(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(format!(
            "a nested stack parameter must be a string, got {other}"
        )),
    }
}

/// Fills in defaults and checks values against AllowedValues, AllowedPattern (each item of a
/// CommaDelimitedList), MinValue and MaxValue, as CloudFormation does before deploying.
fn resolve_parameters(
    declared: &Map<String, Value>,
    given: impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, Value>, Refused> {
    let mut out = BTreeMap::new();
    for (name, p) in declared {
        let default = p.get("Default").map(|d| scalar(d).expect("scalar default"));
        let raw = given(name)
            .or(default)
            .ok_or_else(|| Refused(format!("parameter {name} needs a value")))?;
        let is_list = p["Type"] == "CommaDelimitedList";
        let items: Vec<String> = if is_list {
            raw.split(',').map(str::to_string).collect()
        } else {
            vec![raw.clone()]
        };
        let explain = || {
            p["ConstraintDescription"]
                .as_str()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default()
        };
        for item in &items {
            if let Some(allowed) = p["AllowedValues"].as_array()
                && !allowed
                    .iter()
                    .any(|a| scalar(a).ok().as_deref() == Some(item))
            {
                return Err(Refused(format!("{name}={item:?} is not an allowed value")));
            }
            if let Some(pattern) = p["AllowedPattern"].as_str() {
                let re = regex_lite::Regex::new(pattern).expect("AllowedPattern compiles");
                if !re.is_match(item) {
                    return Err(Refused(format!(
                        "{name}={item:?} does not match {pattern}{}",
                        explain()
                    )));
                }
            }
            if p["Type"] == "Number" {
                let n: f64 = item
                    .parse()
                    .map_err(|_| Refused(format!("{name}={item:?} is not a number")))?;
                if p["MinValue"].as_f64().is_some_and(|min| n < min)
                    || p["MaxValue"].as_f64().is_some_and(|max| n > max)
                {
                    return Err(Refused(format!("{name}={item} is out of range")));
                }
            }
        }
        out.insert(
            name.clone(),
            if is_list { json!(items) } else { json!(raw) },
        );
    }
    Ok(out)
}

/// The Sids of a role's policy statements in this deployment.
fn statement_ids(d: &Deployment, role: &str) -> Vec<String> {
    let statements = d
        .eval(&resources(&d.template)[role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"])
        .expect("policy evaluates");
    statements
        .as_array()
        .expect("statements")
        .iter()
        .map(|s| s["Sid"].as_str().unwrap_or_default().to_string())
        .collect()
}

const SECRET: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:lasso/url-AbCdEf";
const KEY: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:lasso/key-AbCdEf";

fn deploy(extra: &[(&str, &str)]) -> Result<Deployment, Refused> {
    let mut params = vec![
        ("EncryptionKeySecretArn", KEY),
        ("DatabaseSecretArn", SECRET),
    ];
    params.extend_from_slice(extra);
    Deployment::new(&params)
}

#[test]
fn a_default_deployment_has_the_shared_group_only() {
    let d = deploy(&[]).expect("deploys");
    assert_eq!(
        d.groups(),
        BTreeMap::from([("shared".to_string(), "SharedRunnerGroup".to_string())])
    );
    assert_eq!(
        d.runner_queues(),
        BTreeMap::from([(
            "shared".to_string(),
            "https://sqs.test/SharedRunnerGroup".to_string()
        )])
    );
    let env = d.globals_environment();
    assert_eq!(
        env["LASSO_RUNNER_QUEUE_URL"],
        "https://sqs.test/SharedRunnerGroup"
    );
    assert_eq!(
        env["LASSO_DATABASE_URL"],
        json!(format!("{{{{resolve:secretsmanager:{SECRET}}}}}"))
    );
    assert_eq!(env["LASSO_LOG_SINK"], "opensearch");
    assert_eq!(env["LASSO_OPENSEARCH_AUTH"], "sigv4");
    assert_eq!(
        env["LASSO_OPENSEARCH_URL"],
        "https://<LogsDomain.DomainEndpoint>"
    );
    assert_eq!(
        env["LASSO_PUBLIC_URL"],
        "https://<HttpApi>.execute-api.us-east-1.amazonaws.com"
    );
    assert!(d.has("LogsDomain") && d.has("ScriptBucket"));
    assert!(!d.has("DatabaseCluster") && !d.has("FunctionSecurityGroup"));
    for role in ["ApiRole", "SchedulerRole", "DispatcherRole"] {
        let sids = statement_ids(&d, role);
        assert!(
            !sids.contains(&"VpcNetworkInterfaces".to_string()),
            "{role}: {sids:?}"
        );
        assert_eq!(
            sids.contains(&"OpenSearch".to_string()),
            role != "DispatcherRole",
            "{role}: {sids:?}"
        );
    }
}

#[test]
fn the_example_deployment_has_one_dedicated_group() {
    // infra/examples/dedicated-group.yaml nests template.yaml with these parameters.
    let example = load("infra/examples/dedicated-group.yaml");
    let passed = example
        .pointer("/Resources/Lasso/Properties/Parameters")
        .and_then(Value::as_object)
        .expect("the example passes parameters to template.yaml");
    let mut params: Vec<(String, String)> = Vec::new();
    for (k, v) in passed {
        let value = match v {
            Value::Object(r) if r.get("Ref") == Some(&json!("EncryptionKeySecretArn")) => {
                KEY.into()
            }
            Value::Object(r) if r.get("Ref") == Some(&json!("DatabaseSecretArn")) => SECRET.into(),
            other => scalar(other).expect("a literal parameter"),
        };
        params.push((k.clone(), value));
    }
    let params: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let d = Deployment::new(&params).expect("the example deploys");
    assert_eq!(
        d.groups().keys().collect::<Vec<_>>(),
        ["acme", "shared"],
        "the example has the shared group and acme"
    );
    assert_eq!(d.groups()["acme"], "DedicatedRunnerGroup1");
    assert_eq!(
        d.runner_queues(),
        BTreeMap::from([
            (
                "acme".to_string(),
                "https://sqs.test/DedicatedRunnerGroup1".to_string()
            ),
            (
                "shared".to_string(),
                "https://sqs.test/SharedRunnerGroup".to_string()
            ),
        ])
    );
    // api, scheduler and dispatcher may send to both queues, and to nothing else.
    for role in ["ApiRole", "SchedulerRole", "DispatcherRole"] {
        let statements = d
            .eval(&resources(&d.template)[role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"])
            .expect("policy evaluates");
        let send = statements
            .as_array()
            .expect("statements")
            .iter()
            .find(|s| s["Sid"] == "SendToRunnerQueues")
            .unwrap_or_else(|| panic!("{role} has no SendToRunnerQueues"));
        assert_eq!(
            send["Resource"],
            json!([
                "arn:aws:sqs:test:SharedRunnerGroup",
                "arn:aws:sqs:test:DedicatedRunnerGroup1"
            ]),
            "{role}"
        );
    }
}

#[test]
fn dedicated_groups_keep_their_slots() {
    let d = deploy(&[("DedicatedRunnerGroups", "acme,,globex")]).expect("deploys");
    assert_eq!(
        d.groups(),
        BTreeMap::from([
            ("acme".to_string(), "DedicatedRunnerGroup1".to_string()),
            ("globex".to_string(), "DedicatedRunnerGroup3".to_string()),
            ("shared".to_string(), "SharedRunnerGroup".to_string()),
        ])
    );
    assert_eq!(
        d.runner_queues().keys().collect::<Vec<_>>(),
        ["acme", "globex", "shared"]
    );

    let five = deploy(&[("DedicatedRunnerGroups", "a,b,c,d,e")]).expect("five groups deploy");
    assert_eq!(five.groups().len(), 6);
    assert_eq!(five.runner_queues().len(), 6);
}

#[test]
fn bad_group_lists_are_refused() {
    let Err(Refused(e)) = deploy(&[("DedicatedRunnerGroups", "a,b,c,d,e,f")]) else {
        panic!("six dedicated groups must not deploy silently with five");
    };
    assert!(
        e.contains("UnplacedDedicatedGroup") && e.contains("slots"),
        "{e}"
    );

    let Err(Refused(e)) = deploy(&[("DedicatedRunnerGroups", "acme,shared")]) else {
        panic!("a dedicated group named shared must be refused");
    };
    assert!(e.contains("SharedIsNotDedicated"), "{e}");

    let Err(Refused(e)) = deploy(&[("DedicatedRunnerGroups", "Acme")]) else {
        panic!("an upper-case group name must be refused");
    };
    assert!(e.contains("DedicatedRunnerGroups"), "{e}");
}

#[test]
fn the_database_is_a_secret_or_an_aurora_cluster() {
    let Err(Refused(e)) = Deployment::new(&[("EncryptionKeySecretArn", KEY)]) else {
        panic!("a deployment without a database must be refused");
    };
    assert!(e.contains("DatabaseGiven"), "{e}");

    let Err(Refused(e)) = Deployment::new(&[
        ("EncryptionKeySecretArn", KEY),
        ("CreateAuroraCluster", "true"),
    ]) else {
        panic!("Aurora without a VPC must be refused");
    };
    assert!(e.contains("AuroraNeedsVpc"), "{e}");

    let d = Deployment::new(&[
        ("EncryptionKeySecretArn", KEY),
        ("CreateAuroraCluster", "true"),
        ("VpcId", "vpc-0123abcd"),
        ("SubnetIds", "subnet-0aaa,subnet-0bbb"),
        ("LogSink", "postgres"),
    ])
    .expect("Aurora in a VPC deploys");
    for id in [
        "DatabaseCluster",
        "DatabaseInstance",
        "DatabaseUrlSecret",
        "FunctionSecurityGroup",
    ] {
        assert!(d.has(id), "{id} is created");
    }
    assert!(!d.has("LogsDomain"));
    let env = d.globals_environment();
    assert_eq!(
        env["LASSO_DATABASE_URL"],
        "{{resolve:secretsmanager:<DatabaseUrlSecret>}}"
    );
    assert_eq!(env["LASSO_LOG_SINK"], "postgres");
    assert!(!env.contains_key("LASSO_OPENSEARCH_URL"));
    for role in ["ApiRole", "SchedulerRole", "DispatcherRole"] {
        assert!(
            statement_ids(&d, role).contains(&"VpcNetworkInterfaces".to_string()),
            "{role} may manage the function's network interfaces in the VPC"
        );
    }
    let api = resources(&d.template)["ApiFunction"]["Properties"]["VpcConfig"].clone();
    assert_eq!(
        d.eval(&api).expect("VpcConfig"),
        json!({"SubnetIds": ["subnet-0aaa", "subnet-0bbb"], "SecurityGroupIds": ["<FunctionSecurityGroup>"]})
    );
}

#[test]
fn an_existing_opensearch_endpoint_replaces_the_domain() {
    let d =
        deploy(&[("ExistingOpenSearchEndpoint", "https://search.example.com")]).expect("deploys");
    assert!(!d.has("LogsDomain"));
    let env = d.globals_environment();
    assert_eq!(env["LASSO_OPENSEARCH_URL"], "https://search.example.com");
    assert_eq!(env["LASSO_OPENSEARCH_AUTH"], "none");

    let d = deploy(&[
        ("ExistingOpenSearchEndpoint", "https://search.example.com"),
        (
            "ExistingOpenSearchDomainArn",
            "arn:aws:es:us-east-1:123456789012:domain/logs",
        ),
    ])
    .expect("deploys");
    assert_eq!(d.globals_environment()["LASSO_OPENSEARCH_AUTH"], "sigv4");
}

#[test]
fn group_names_follow_the_control_planes_rule_and_runners_can_have_their_own_database_user() {
    let patterns = [
        parent()["Parameters"]["DedicatedRunnerGroups"]["AllowedPattern"]
            .as_str()
            .unwrap()
            .to_string(),
        runner_group()["Parameters"]["GroupName"]["AllowedPattern"]
            .as_str()
            .unwrap()
            .to_string(),
    ];
    let names = [
        "acme",
        "acme_corp",
        "a1",
        "1a",
        "acme-corp",
        "Acme",
        "_a",
        "",
        &"a".repeat(31),
        &"a".repeat(32),
    ];
    for pattern in &patterns {
        let re = regex_lite::Regex::new(pattern).unwrap();
        for name in names.iter().filter(|n| !n.is_empty()) {
            assert_eq!(
                re.is_match(name),
                lasso_services::runner_groups::valid_name(name),
                "{pattern} on `{name}`"
            );
        }
    }

    // Every group stack gets the secret prefix, and the runner uses it when set.
    let t = parent();
    for (id, r) in resources(&t) {
        if r["Type"] == "AWS::Serverless::Application" {
            assert_eq!(
                r["Properties"]["Parameters"]["RunnerDatabaseSecretPrefix"],
                json!({"Ref": "RunnerDatabaseSecretPrefix"}),
                "{id}"
            );
        }
    }
    let child = runner_group();
    let (_, runner) = functions(&child)[0];
    let url = &environment(&child, runner)["LASSO_DATABASE_URL"];
    assert_eq!(url["Fn::If"][0], "HasGroupDatabaseUser", "{url}");
    assert_eq!(
        url["Fn::If"][1],
        json!({"Fn::Sub": "{{resolve:secretsmanager:${RunnerDatabaseSecretPrefix}${GroupName}}}"})
    );
}

/// The frontend SDK's auth sockets: a WebSocket API on its own host whose three routes reach
/// the api function, which alone is told the API's endpoint (stage included) and may post to
/// its connections and invoke itself for their acks; the stack publishes the socket's URL.
#[test]
fn the_auth_sockets_have_a_websocket_api_that_reaches_the_api_function() {
    let d = deploy(&[]).expect("deploys");
    let of_type = |ty: &str| -> Vec<(&str, &Value)> {
        d.resources()
            .into_iter()
            .filter(|(_, r)| r["Type"] == ty)
            .collect()
    };
    let sockets: Vec<&str> = of_type("AWS::ApiGatewayV2::Api")
        .into_iter()
        .filter(|(_, r)| r["Properties"]["ProtocolType"] == "WEBSOCKET")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(sockets.len(), 1, "one WebSocket API: {sockets:?}");
    let api = sockets[0];
    let on_api = |ty: &str| -> Vec<(&str, &Value)> {
        of_type(ty)
            .into_iter()
            .filter(|(_, r)| r["Properties"]["ApiId"] == json!({ "Ref": api }))
            .collect()
    };

    // $connect, $disconnect and $default all go to one proxy integration of the api function.
    let routes: BTreeMap<String, String> = on_api("AWS::ApiGatewayV2::Route")
        .into_iter()
        .map(|(_, r)| {
            (
                d.string(&r["Properties"]["RouteKey"]).expect("RouteKey"),
                d.string(&r["Properties"]["Target"]).expect("Target"),
            )
        })
        .collect();
    assert_eq!(
        routes.keys().map(String::as_str).collect::<Vec<_>>(),
        ["$connect", "$default", "$disconnect"]
    );
    let integrations = on_api("AWS::ApiGatewayV2::Integration");
    assert_eq!(integrations.len(), 1);
    let (integration, i) = integrations[0];
    for target in routes.values() {
        assert_eq!(target, &format!("integrations/<{integration}>"));
    }
    assert_eq!(i["Properties"]["IntegrationType"], "AWS_PROXY");
    assert_eq!(
        d.string(&i["Properties"]["IntegrationUri"]).unwrap(),
        "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/<ApiFunction.Arn>/invocations"
    );
    assert!(
        of_type("AWS::Lambda::Permission").iter().any(|(_, p)| {
            p["Properties"]["FunctionName"] == json!({ "Ref": "ApiFunction" })
                && d.string(&p["Properties"]["SourceArn"]).unwrap()
                    == format!("arn:aws:execute-api:us-east-1:123456789012:<{api}>/*")
        }),
        "API Gateway may invoke the api function for {api}"
    );

    // One stage; its name is in the api's endpoint, the published URL and the api's policy.
    let stages = on_api("AWS::ApiGatewayV2::Stage");
    assert_eq!(stages.len(), 1);
    let stage = d.string(&stages[0].1["Properties"]["StageName"]).unwrap();
    let host = format!("<{api}>.execute-api.us-east-1.amazonaws.com");
    let t = &d.template;
    for (id, f) in functions(t) {
        let env = d.eval(&Value::Object(environment(t, f))).unwrap();
        let endpoint = env.get("LASSO_AUTH_SOCKET_ENDPOINT");
        if id == "ApiFunction" {
            assert_eq!(endpoint, Some(&json!(format!("https://{host}/{stage}"))));
        } else {
            assert_eq!(endpoint, None, "{id} does not handle the sockets");
        }
    }
    assert_eq!(
        d.string(&t["Outputs"]["AuthSocketUrl"]["Value"]).unwrap(),
        format!("wss://{host}/{stage}")
    );
    let policies: Vec<Value> = of_type("AWS::IAM::Policy")
        .into_iter()
        .filter(|(_, p)| {
            p["Properties"]["Roles"]
                .as_array()
                .is_some_and(|r| r.contains(&json!({ "Ref": "ApiRole" })))
        })
        .flat_map(|(_, p)| {
            d.eval(&p["Properties"]["PolicyDocument"]["Statement"])
                .unwrap()
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    let allows = |action: &str, resource: &str| {
        policies
            .iter()
            .any(|s| s["Effect"] == "Allow" && s["Action"] == action && s["Resource"] == resource)
    };
    assert!(
        allows(
            "execute-api:ManageConnections",
            &format!(
                "arn:aws:execute-api:us-east-1:123456789012:<{api}>/{stage}/POST/@connections/*"
            )
        ),
        "the api may post to the sockets: {policies:?}"
    );
    assert!(
        allows("lambda:InvokeFunction", "<ApiFunction.Arn>"),
        "the api may invoke itself to send acks: {policies:?}"
    );
}
