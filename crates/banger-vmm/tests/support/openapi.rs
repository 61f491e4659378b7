//! A Swagger 2.0 request validator for Firecracker's `firecracker-api.yaml`, read at test
//! time (never copied into Rust types), so a change in banger's requests that Firecracker
//! would refuse fails here. It routes by method + path template (`/drives/{drive_id}`),
//! resolves `$ref`s into `definitions`, and checks a JSON body for required fields, types,
//! enums, `minimum`/`maximum`, and unknown fields: an object schema with `properties`
//! admits no other field unless `additionalProperties` says so, because Firecracker's
//! serde types use `deny_unknown_fields`.
//!
//! One rule comes from Firecracker's behaviour rather than the schema: a path parameter
//! (`drive_id`, `iface_id`) must equal the body field of the same name, which Firecracker
//! checks ("The id from the path does not match the id from the body").
//!
//! Any schema keyword this validator does not implement makes loading fail, so a spec
//! update that adds, say, `pattern` cannot be silently ignored.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value as Json};
use serde_yaml::Value as Yaml;

/// Keywords this validator understands; anything else in a schema is an error.
const KNOWN_KEYWORDS: &[&str] = &[
    "$ref",
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "minimum",
    "maximum",
    // Annotations with no effect on validity (Firecracker's serde checks integer widths
    // through the field types; `format` here only documents them).
    "description",
    "default",
    "format",
    "readOnly",
    "example",
];

/// The parsed API description.
#[derive(Debug)]
pub struct ApiSpec {
    routes: Vec<Route>,
    definitions: serde_yaml::Mapping,
}

#[derive(Debug)]
struct Route {
    template: String,
    segments: Vec<Segment>,
    /// Lower-case method -> operation.
    operations: BTreeMap<String, Operation>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// One documented operation.
#[derive(Debug, Clone)]
pub struct Operation {
    pub operation_id: String,
    /// The body parameter's schema and whether the body is required.
    body: Option<(Yaml, bool)>,
    /// The documented success status (the lowest 2xx) and its response schema, if any.
    pub success_status: u16,
    success_schema: Option<Yaml>,
}

/// What the validator says about one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Documented and valid; answer with this status and body.
    Valid { status: u16, body: Option<Json> },
    /// Documented, but the body is invalid: answer 400 with this fault message.
    Invalid(String),
    /// The spec describes no such method + path.
    Undocumented(String),
}

impl ApiSpec {
    pub fn load(path: &Path) -> Result<ApiSpec, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        ApiSpec::parse(&text)
    }

    pub fn parse(text: &str) -> Result<ApiSpec, String> {
        let document: Yaml = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        if document.get("swagger").and_then(Yaml::as_str) != Some("2.0") {
            return Err("not a Swagger 2.0 document".into());
        }
        let definitions = document
            .get("definitions")
            .and_then(Yaml::as_mapping)
            .cloned()
            .ok_or("no definitions")?;
        let paths = document
            .get("paths")
            .and_then(Yaml::as_mapping)
            .ok_or("no paths")?;
        let mut routes = Vec::new();
        for (template, item) in paths {
            let template = template.as_str().ok_or("a non-string path")?.to_string();
            let item = item
                .as_mapping()
                .ok_or_else(|| format!("{template}: not a mapping"))?;
            let mut operations = BTreeMap::new();
            for (method, operation) in item {
                let method = method.as_str().ok_or("a non-string method")?.to_lowercase();
                operations.insert(
                    method.clone(),
                    parse_operation(operation).map_err(|e| format!("{method} {template}: {e}"))?,
                );
            }
            routes.push(Route {
                segments: split_template(&template),
                template,
                operations,
            });
        }
        let spec = ApiSpec {
            routes,
            definitions,
        };
        spec.check_keywords()?;
        Ok(spec)
    }

    /// Every documented `(METHOD, template)`.
    pub fn operations(&self) -> Vec<(String, String)> {
        self.routes
            .iter()
            .flat_map(|route| {
                route
                    .operations
                    .keys()
                    .map(|method| (method.to_uppercase(), route.template.clone()))
            })
            .collect()
    }

    /// Walks every definition and operation schema, refusing unknown keywords and
    /// dangling `$ref`s.
    fn check_keywords(&self) -> Result<(), String> {
        for (name, schema) in &self.definitions {
            let name = name.as_str().unwrap_or("?");
            self.check_schema(schema, &format!("definitions/{name}"))?;
        }
        for route in &self.routes {
            for (method, operation) in &route.operations {
                let at = format!("{method} {}", route.template);
                if let Some((schema, _)) = &operation.body {
                    self.check_schema(schema, &at)?;
                }
                if let Some(schema) = &operation.success_schema {
                    self.check_schema(schema, &at)?;
                }
            }
        }
        Ok(())
    }

    fn check_schema(&self, schema: &Yaml, at: &str) -> Result<(), String> {
        let mapping = schema
            .as_mapping()
            .ok_or_else(|| format!("{at}: schema is not a mapping"))?;
        for (key, value) in mapping {
            let key = key
                .as_str()
                .ok_or_else(|| format!("{at}: non-string keyword"))?;
            if !KNOWN_KEYWORDS.contains(&key) {
                return Err(format!("{at}: schema keyword `{key}` is not implemented"));
            }
            match key {
                "$ref" => {
                    self.resolve_ref(value.as_str().unwrap_or_default())?;
                }
                "properties" => {
                    for (property, sub) in value.as_mapping().ok_or(format!("{at}: properties"))? {
                        let property = property.as_str().unwrap_or("?");
                        self.check_schema(sub, &format!("{at}.{property}"))?;
                    }
                }
                "items" => self.check_schema(value, &format!("{at}[]"))?,
                "additionalProperties" if value.is_mapping() => {
                    self.check_schema(value, &format!("{at}.*"))?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn resolve_ref(&self, reference: &str) -> Result<&Yaml, String> {
        let name = reference
            .strip_prefix("#/definitions/")
            .ok_or_else(|| format!("unsupported $ref {reference}"))?;
        self.definitions
            .get(name)
            .ok_or_else(|| format!("dangling $ref {reference}"))
    }

    /// Follows `$ref`s (Swagger 2 ignores a `$ref`'s siblings).
    fn resolve<'a>(&'a self, mut schema: &'a Yaml) -> Result<&'a Yaml, String> {
        for _ in 0..32 {
            match schema.get("$ref").and_then(Yaml::as_str) {
                Some(reference) => schema = self.resolve_ref(reference)?,
                None => return Ok(schema),
            }
        }
        Err("a $ref cycle".into())
    }

    /// Finds the operation for `method` + `path`, with the path parameters.
    pub fn route(
        &self,
        method: &str,
        path: &str,
    ) -> Result<(&str, &Operation, BTreeMap<String, String>), String> {
        let parts: Vec<&str> = path.split('/').filter(|part| !part.is_empty()).collect();
        let mut path_matched = false;
        for route in &self.routes {
            let Some(params) = match_segments(&route.segments, &parts) else {
                continue;
            };
            path_matched = true;
            if let Some(operation) = route.operations.get(&method.to_lowercase()) {
                return Ok((&route.template, operation, params));
            }
        }
        Err(if path_matched {
            format!("{method} is not documented for {path}")
        } else {
            format!("no documented path matches {path}")
        })
    }

    /// The verdict for one request.
    pub fn check(&self, method: &str, path: &str, body: &[u8]) -> Verdict {
        let (template, operation, params) = match self.route(method, path) {
            Ok(found) => found,
            Err(reason) => return Verdict::Undocumented(format!("{method} {path}: {reason}")),
        };
        let has_body = !body.iter().all(u8::is_ascii_whitespace);
        let value = match (&operation.body, has_body) {
            (None, false) => None,
            (None, true) => {
                return Verdict::Invalid(format!("{method} {template} takes no body"));
            }
            (Some((_, true)), false) => {
                return Verdict::Invalid(format!("{method} {template}: the body is required"));
            }
            (Some(_), false) => None,
            (Some(_), true) => match serde_json::from_slice::<Json>(body) {
                Ok(value) => Some(value),
                Err(error) => return Verdict::Invalid(format!("the body is not JSON: {error}")),
            },
        };
        if let (Some((schema, _)), Some(value)) = (&operation.body, &value) {
            if let Err(message) = self.validate(schema, value, "body") {
                return Verdict::Invalid(format!("{}: {message}", operation.operation_id));
            }
            for (name, from_path) in &params {
                if let Some(from_body) = value.get(name)
                    && from_body.as_str() != Some(from_path.as_str())
                {
                    return Verdict::Invalid(format!(
                        "body.{name} = {from_body} does not match the path's {from_path:?}"
                    ));
                }
            }
        }
        let body = match &operation.success_schema {
            Some(schema) => match self.example(schema, "response") {
                Ok(example) => Some(example),
                Err(message) => return Verdict::Invalid(format!("cannot answer: {message}")),
            },
            None => None,
        };
        Verdict::Valid {
            status: operation.success_status,
            body,
        }
    }

    /// Validates `value` against `schema`; the error names the offending location.
    pub fn validate(&self, schema: &Yaml, value: &Json, at: &str) -> Result<(), String> {
        let schema = self.resolve(schema)?;
        if let Some(allowed) = schema.get("enum").and_then(Yaml::as_sequence) {
            let allowed: Vec<Json> = allowed.iter().map(yaml_to_json).collect::<Result<_, _>>()?;
            if !allowed.contains(value) {
                return Err(format!(
                    "{at} = {value} is not one of {}",
                    Json::Array(allowed)
                ));
            }
        }
        let declared = schema.get("type").and_then(Yaml::as_str);
        let kind = declared.or_else(|| {
            if schema.get("properties").is_some() {
                Some("object")
            } else if schema.get("items").is_some() {
                Some("array")
            } else {
                None
            }
        });
        match kind {
            None => Ok(()),
            Some("object") => self.validate_object(schema, value, at),
            Some("array") => {
                let items = value
                    .as_array()
                    .ok_or_else(|| type_error(at, "array", value))?;
                match schema.get("items") {
                    Some(item_schema) => items.iter().enumerate().try_for_each(|(index, item)| {
                        self.validate(item_schema, item, &format!("{at}[{index}]"))
                    }),
                    None => Ok(()),
                }
            }
            Some("string") => value
                .is_string()
                .then_some(())
                .ok_or_else(|| type_error(at, "string", value)),
            Some("boolean") => value
                .is_boolean()
                .then_some(())
                .ok_or_else(|| type_error(at, "boolean", value)),
            Some("integer") => {
                if !(value.is_i64() || value.is_u64()) {
                    return Err(type_error(at, "integer", value));
                }
                check_bounds(schema, value, at)
            }
            Some("number") => {
                if !value.is_number() {
                    return Err(type_error(at, "number", value));
                }
                check_bounds(schema, value, at)
            }
            Some(other) => Err(format!("{at}: schema type `{other}` is not implemented")),
        }
    }

    fn validate_object(&self, schema: &Yaml, value: &Json, at: &str) -> Result<(), String> {
        let object = value
            .as_object()
            .ok_or_else(|| type_error(at, "object", value))?;
        for required in schema
            .get("required")
            .and_then(Yaml::as_sequence)
            .into_iter()
            .flatten()
        {
            let name = required.as_str().unwrap_or_default();
            if !object.contains_key(name) {
                return Err(format!("{at}.{name} is required"));
            }
        }
        let properties = schema.get("properties").and_then(Yaml::as_mapping);
        for (name, field) in object {
            let field_at = format!("{at}.{name}");
            match properties.and_then(|p| p.get(name.as_str())) {
                Some(property) => self.validate(property, field, &field_at)?,
                None => match schema.get("additionalProperties") {
                    Some(Yaml::Bool(true)) => {}
                    Some(extra) if extra.is_mapping() => self.validate(extra, field, &field_at)?,
                    // Absent or false: Firecracker's `deny_unknown_fields` refuses it.
                    _ if properties.is_some() || schema.get("additionalProperties").is_some() => {
                        return Err(format!("{field_at} is not a known field"));
                    }
                    _ => {}
                },
            }
        }
        Ok(())
    }

    /// A minimal instance of `schema` (required fields only), used as the body of a
    /// documented 200 answer; it is validated against the same schema before use.
    pub fn example(&self, schema: &Yaml, at: &str) -> Result<Json, String> {
        let resolved = self.resolve(schema)?;
        let example = if let Some(first) = resolved
            .get("enum")
            .and_then(Yaml::as_sequence)
            .and_then(|values| values.first())
        {
            yaml_to_json(first)?
        } else {
            match resolved.get("type").and_then(Yaml::as_str) {
                Some("string") => Json::String("example".into()),
                Some("integer") | Some("number") => resolved
                    .get("minimum")
                    .map(yaml_to_json)
                    .transpose()?
                    .unwrap_or(Json::from(0)),
                Some("boolean") => Json::Bool(false),
                Some("array") => Json::Array(Vec::new()),
                _ => {
                    let mut object = Map::new();
                    let properties = resolved.get("properties");
                    for required in resolved
                        .get("required")
                        .and_then(Yaml::as_sequence)
                        .into_iter()
                        .flatten()
                    {
                        let name = required.as_str().unwrap_or_default();
                        let property = properties
                            .and_then(|p| p.get(name))
                            .ok_or_else(|| format!("{at}.{name} is required but not described"))?;
                        object.insert(
                            name.to_string(),
                            self.example(property, &format!("{at}.{name}"))?,
                        );
                    }
                    Json::Object(object)
                }
            }
        };
        self.validate(schema, &example, at)?;
        Ok(example)
    }
}

fn parse_operation(operation: &Yaml) -> Result<Operation, String> {
    let operation_id = operation
        .get("operationId")
        .and_then(Yaml::as_str)
        .unwrap_or_default()
        .to_string();
    let mut body = None;
    for parameter in operation
        .get("parameters")
        .and_then(Yaml::as_sequence)
        .into_iter()
        .flatten()
    {
        if parameter.get("in").and_then(Yaml::as_str) == Some("body") {
            let schema = parameter
                .get("schema")
                .cloned()
                .ok_or("a body parameter without schema")?;
            let required = parameter
                .get("required")
                .and_then(Yaml::as_bool)
                .unwrap_or(false);
            body = Some((schema, required));
        }
    }
    let responses = operation
        .get("responses")
        .and_then(Yaml::as_mapping)
        .ok_or("no responses")?;
    let mut success: Option<(u16, Option<Yaml>)> = None;
    for (code, response) in responses {
        let code = match code {
            Yaml::Number(number) => number.as_u64().and_then(|n| u16::try_from(n).ok()),
            Yaml::String(text) => text.parse().ok(),
            _ => None,
        };
        if let Some(code) = code.filter(|code| (200..300).contains(code))
            && success.as_ref().is_none_or(|(best, _)| code < *best)
        {
            success = Some((code, response.get("schema").cloned()));
        }
    }
    let (success_status, success_schema) = success.ok_or("no 2xx response")?;
    Ok(Operation {
        operation_id,
        body,
        success_status,
        success_schema,
    })
}

fn split_template(template: &str) -> Vec<Segment> {
    template
        .split('/')
        .filter(|part| !part.is_empty())
        .map(
            |part| match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(name) => Segment::Param(name.to_string()),
                None => Segment::Literal(part.to_string()),
            },
        )
        .collect()
}

fn match_segments(segments: &[Segment], parts: &[&str]) -> Option<BTreeMap<String, String>> {
    if segments.len() != parts.len() {
        return None;
    }
    let mut params = BTreeMap::new();
    for (segment, part) in segments.iter().zip(parts) {
        match segment {
            Segment::Literal(literal) if literal == part => {}
            Segment::Literal(_) => return None,
            Segment::Param(name) => {
                params.insert(name.clone(), (*part).to_string());
            }
        }
    }
    Some(params)
}

fn check_bounds(schema: &Yaml, value: &Json, at: &str) -> Result<(), String> {
    let number = value.as_f64().unwrap_or_default();
    if let Some(minimum) = schema.get("minimum").and_then(Yaml::as_f64)
        && number < minimum
    {
        return Err(format!("{at} = {value} is below the minimum {minimum}"));
    }
    if let Some(maximum) = schema.get("maximum").and_then(Yaml::as_f64)
        && number > maximum
    {
        return Err(format!("{at} = {value} is above the maximum {maximum}"));
    }
    Ok(())
}

fn type_error(at: &str, expected: &str, value: &Json) -> String {
    format!("{at} = {value} should be of type {expected}")
}

fn yaml_to_json(value: &Yaml) -> Result<Json, String> {
    serde_json::to_value(value).map_err(|error| format!("cannot convert {value:?}: {error}"))
}
