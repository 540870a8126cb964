//! `[variables.NAME]` and `[locals]`: typed values computed once, before any
//! build starts, in the order they depend on each other.

use std::collections::BTreeMap;

use toml::de::DeValue;

use super::Loader;
use crate::template::document::KeyPath;
use crate::template::expr;
use crate::template::hints::did_you_mean;
use crate::template::interpolate::{Scope, Typed, references};
use crate::template::value::{Node, NodeKind, Value};
use crate::template::variables::{self, TYPE_NAMES, VarInputs, VarType, literal};
use crate::template::{Local, Variable, is_identifier};

/// The keys a `[variables.NAME]` table takes.
const VARIABLE_KEYS: &[&str] = &["type", "default", "description", "sensitive", "allowed"];

impl Loader<'_> {
    /// Reads every variable in the order written; a default may use
    /// `${env.…}`, functions and the variables declared before it.
    pub(super) fn variables(&mut self, inputs: &VarInputs, scope: &mut Scope) -> Vec<Variable> {
        let path = KeyPath::root().key("variables");
        let mut out = Vec::new();
        let assigned = match variables::gather(inputs) {
            Ok(a) => a,
            Err(mut d) => {
                self.diags.append(&mut d);
                BTreeMap::new()
            }
        };
        let table = self.table_at(&path, "one `[variables.NAME]` table per variable");
        for (key, _) in table.into_iter().flat_map(|t| t.iter()) {
            let name = key.get_ref().to_string();
            let var_path = path.key(&name);
            if !is_identifier(&name) {
                self.error(
                    Some(key.span()),
                    format!("variable name `{name}` may contain only letters, digits and `_`"),
                );
            }
            let Some(def) = self.table_at(
                &var_path,
                "with `type`, `default`, `description`, `sensitive`, `allowed`",
            ) else {
                continue;
            };
            if !self.unknown_keys(
                &var_path,
                def,
                &[VARIABLE_KEYS],
                &format!("in variable `{name}`"),
            ) {
                continue;
            }
            let description = self.optional_string(&var_path.key("description"));
            let sensitive = match def.get("sensitive").map(|v| (v.get_ref(), v.span())) {
                None => false,
                Some((DeValue::Boolean(b), _)) => *b,
                Some((_, span)) => {
                    self.error(Some(span), "`sensitive` is true or false");
                    false
                }
            };
            let declared = match self.optional_string(&var_path.key("type")) {
                None => None,
                Some(t) => match VarType::parse(&t) {
                    Some(t) => Some(t),
                    None => {
                        self.error_at(
                            &var_path.key("type"),
                            format!("unknown variable type \"{t}\""),
                        )
                        .help = Some(format!("use {TYPE_NAMES}"));
                        continue;
                    }
                },
            };
            let default = match def.get("default") {
                Some(v) => {
                    match self.computed(v, scope, &format!("the default of variable `{name}`")) {
                        Some(d) => Some((d, v.span())),
                        None => continue,
                    }
                }
                None => None,
            };
            let kind = declared
                .or(default.as_ref().map(|(d, _)| VarType::of(d)))
                .unwrap_or(VarType::String);
            let shown = |v: &Typed| {
                if sensitive {
                    "<sensitive>".to_string()
                } else {
                    v.to_string()
                }
            };
            let value = match (assigned.get(&name), default) {
                (Some(a), _) => match kind.convert(a.value.clone()) {
                    Ok(v) => Some(v),
                    Err(problem) => {
                        let problem = if sensitive {
                            format!("expects {}", problem_kind(&problem))
                        } else {
                            problem
                        };
                        self.error(
                            Some(key.span()),
                            format!("{}: variable `{name}` ({kind}) {problem}", a.origin),
                        );
                        None
                    }
                },
                (None, Some((d, span))) => match kind.convert(d) {
                    Ok(v) => Some(v),
                    Err(problem) => {
                        self.error(
                            Some(span),
                            format!("the default of variable `{name}` ({kind}) {problem}"),
                        );
                        None
                    }
                },
                (None, None) => {
                    self.error(Some(key.span()), format!("variable `{name}` has no value"))
                        .help = Some(format!(
                        "set it with `--var {name}=VALUE`, a `--var-file`, or IMGBUILD_VAR_{name}; or give it a `default`"
                    ));
                    None
                }
            };
            if let (Some(v), Some(allowed)) = (&value, def.get("allowed")) {
                self.check_allowed(&name, v, allowed, &shown);
            }
            // What uses a variable in error is not reported again: its own
            // error is the one worth reading.
            match &value {
                Some(v) => scope.set(format!("var.{name}"), v.clone()),
                None => scope.fail(format!("var.{name}")),
            }
            out.push(Variable {
                name,
                kind,
                value,
                description,
                sensitive,
            });
        }
        for (name, a) in &assigned {
            let declared = table.is_some_and(|t| t.contains_key(name.as_str()));
            if !declared && !a.origin.starts_with("environment") {
                let names = table
                    .into_iter()
                    .flat_map(|t| t.iter().map(|(k, _)| k.get_ref().as_ref()));
                let hint = did_you_mean(name, names);
                let d = self.doc.diagnostic(
                    Some(0..0),
                    format!(
                        "{} sets `{name}`, which the template does not declare",
                        a.origin
                    ),
                );
                self.diags.push(match hint {
                    Some(h) => d.with_help(format!("did you mean `{h}`?")),
                    None => d.with_help(format!("declare it with a `[variables.{name}]` table")),
                });
            }
        }
        out
    }

    fn check_allowed(
        &mut self,
        name: &str,
        value: &Typed,
        allowed: &Value,
        shown: &dyn Fn(&Typed) -> String,
    ) {
        let DeValue::Array(items) = allowed.get_ref() else {
            self.error(Some(allowed.span()), "`allowed` is a list of values");
            return;
        };
        let choices: Vec<Typed> = items.iter().map(|i| literal(&Node::from_toml(i))).collect();
        let listed = |v: &Typed| {
            choices
                .iter()
                .any(|c| c.as_text().is_some() && c.as_text() == v.as_text())
        };
        let ok = match value {
            Typed::List(items) => items.iter().all(|i| listed(&Typed::Str(i.clone()))),
            Typed::Map(_) => {
                self.error(
                    Some(allowed.span()),
                    "`allowed` works with strings, numbers, booleans and lists",
                );
                return;
            }
            v => listed(v),
        };
        if !ok {
            let all: Vec<String> = choices.iter().map(|c| c.to_string()).collect();
            self.error(
                Some(allowed.span()),
                format!(
                    "variable `{name}` is {}, which `allowed` does not list",
                    shown(value)
                ),
            )
            .help = Some(format!("allowed: {}", all.join(", ")));
        }
    }

    /// Reads `[locals]`: each evaluated once, after what it refers to.
    pub(super) fn locals(&mut self, scope: &mut Scope, vars: &[Variable]) -> Vec<Local> {
        let path = KeyPath::root().key("locals");
        let Some(table) = self.table_at(&path, "`name = value` lines") else {
            return Vec::new();
        };
        let entries: Vec<(String, &Value, std::ops::Range<usize>)> = table
            .iter()
            .map(|(k, v)| (k.get_ref().to_string(), v, k.span()))
            .collect();
        let index: BTreeMap<&str, usize> = entries
            .iter()
            .enumerate()
            .map(|(i, (n, _, _))| (n.as_str(), i))
            .collect();
        let deps: Vec<Vec<String>> = entries.iter().map(|(_, v, _)| reference_paths(v)).collect();
        // Depth-first, in the order written; `state` 1 = being evaluated, 2 = done.
        let mut state = vec![0u8; entries.len()];
        let mut order = Vec::new();
        let mut cycles = Vec::new();
        fn visit(
            i: usize,
            stack: &mut Vec<usize>,
            state: &mut [u8],
            order: &mut Vec<usize>,
            cycles: &mut Vec<Vec<usize>>,
            deps: &[Vec<String>],
            index: &BTreeMap<&str, usize>,
        ) {
            match state[i] {
                2 => return,
                1 => {
                    let from = stack.iter().position(|&s| s == i).unwrap_or(0);
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(i);
                    cycles.push(cycle);
                    return;
                }
                _ => {}
            }
            state[i] = 1;
            stack.push(i);
            for d in &deps[i] {
                if let Some(&j) = d.strip_prefix("local.").and_then(|n| index.get(n)) {
                    visit(j, stack, state, order, cycles, deps, index);
                }
            }
            stack.pop();
            state[i] = 2;
            order.push(i);
        }
        for i in 0..entries.len() {
            visit(
                i,
                &mut Vec::new(),
                &mut state,
                &mut order,
                &mut cycles,
                &deps,
                &index,
            );
        }
        let mut in_cycle = vec![false; entries.len()];
        for cycle in &cycles {
            let names: Vec<&str> = cycle.iter().map(|&i| entries[i].0.as_str()).collect();
            let first = cycle[0];
            self.error(
                Some(entries[first].2.clone()),
                format!(
                    "local `{}` depends on itself: {}",
                    entries[first].0,
                    names.join(" -> ")
                ),
            );
            cycle.iter().for_each(|&i| in_cycle[i] = true);
        }
        let sensitive_vars: Vec<String> = vars
            .iter()
            .filter(|v| v.sensitive)
            .map(|v| format!("var.{}", v.name))
            .collect();
        let mut out: Vec<Option<Local>> = vec![None; entries.len()];
        for i in order {
            let (name, value, _) = &entries[i];
            if in_cycle[i] || !is_identifier(name) {
                if !is_identifier(name) {
                    self.error(
                        Some(entries[i].2.clone()),
                        format!("local name `{name}` may contain only letters, digits and `_`"),
                    );
                }
                continue;
            }
            let Some(typed) = self.computed(value, scope, &format!("local `{name}`")) else {
                continue;
            };
            let sensitive = deps[i].iter().any(|d| {
                sensitive_vars.contains(d)
                    || d.strip_prefix("local.")
                        .and_then(|n| index.get(n))
                        .and_then(|&j| out[j].as_ref())
                        .is_some_and(|l| l.sensitive)
            });
            scope.set(format!("local.{name}"), typed.clone());
            out[i] = Some(Local {
                name: name.clone(),
                value: typed,
                sensitive,
            });
        }
        out.into_iter().flatten().collect()
    }

    /// A value computed before any build: every reference in it must be
    /// known now (`var.`, `local.`, `env.`, functions).
    fn computed(&mut self, value: &Value, scope: &Scope, what: &str) -> Option<Typed> {
        let node = Node::from_toml(value);
        match typed(&node, scope) {
            Ok(v) => Some(v),
            // An empty problem: the value uses one already reported.
            Err((_, problem)) if problem.is_empty() => None,
            Err((span, problem)) => {
                self.error(Some(span), format!("{what}: {problem}"));
                None
            }
        }
    }
}

/// The value of `node` with every `${…}` in it evaluated now.
fn typed(node: &Node, scope: &Scope) -> Result<Typed, (std::ops::Range<usize>, String)> {
    let at = |problem: String| (node.span.clone(), problem);
    let text = |s: &str| -> Result<Typed, (std::ops::Range<usize>, String)> {
        let refs = references(s).map_err(|e| at(e.to_string()))?;
        for r in &refs {
            let e = expr::parse(&r.expr).map_err(|e| at(e.to_string()))?;
            if scope.uses_failed(&e) {
                return Err(at(String::new()));
            }
            if !scope.knows(&e) {
                let missing = e
                    .references()
                    .into_iter()
                    .find(|p| !scope.knows(&expr::parse(p).expect("a path parses")))
                    .unwrap_or_default()
                    .to_string();
                return Err(at(match missing.strip_prefix("env.") {
                    Some(n) => format!(
                        "environment variable `{n}` is not set; give a fallback: `${{env.{n}:-value}}`"
                    ),
                    None => format!(
                        "`${{{missing}}}` has no value yet; this may use `var.` (declared above), `local.`, `env.` and functions"
                    ),
                }));
            }
        }
        match Scope::whole(s) {
            Some(e) => scope.eval(&e),
            None => scope.expand(s).map(Typed::Str),
        }
        .map_err(|e| at(e.to_string()))
    };
    match &node.kind {
        NodeKind::Str(s) => text(s),
        NodeKind::List(items) => items
            .iter()
            .map(|i| match typed(i, scope)?.as_text() {
                Some(t) => Ok(t),
                None => Err((i.span.clone(), "a list holds strings only".to_string())),
            })
            .collect::<Result<_, _>>()
            .map(Typed::List),
        NodeKind::Table(entries) => entries
            .iter()
            .map(|(k, v)| match typed(v, scope)?.as_text() {
                Some(t) => Ok((k.clone(), t)),
                None => Err((v.span.clone(), "a map holds strings only".to_string())),
            })
            .collect::<Result<_, _>>()
            .map(Typed::Map),
        _ => Ok(literal(node)),
    }
}

/// Every reference path (`local.x`, `var.y`) in a value's strings.
fn reference_paths(value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v.get_ref() {
            DeValue::String(s) => {
                for r in references(s).unwrap_or_default() {
                    if let Ok(e) = expr::parse(&r.expr) {
                        out.extend(e.references().into_iter().map(str::to_string));
                    }
                }
            }
            DeValue::Array(items) => items.iter().for_each(|i| walk(i, out)),
            DeValue::Table(t) => t.iter().for_each(|(_, v)| walk(v, out)),
            _ => {}
        }
    }
    walk(value, &mut out);
    out
}

/// "expects a number" from "expects a number, got \"x\"": the kind alone,
/// for sensitive values.
fn problem_kind(problem: &str) -> &str {
    problem
        .strip_prefix("expects ")
        .and_then(|p| p.split(", got").next())
        .unwrap_or(problem)
}

#[cfg(test)]
mod tests {
    use crate::template::{Diagnostic, Template, Typed, VarInputs, load};

    fn load_text(text: &str) -> Result<Template, Vec<Diagnostic>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.toml");
        std::fs::write(&path, text).expect("write template");
        load(&path, &VarInputs::default())
    }

    const SOURCE: &str = "[source.box]\ntype = \"ssh\"\nssh_host = \"h\"\nssh_username = \"u\"\n";

    #[test]
    fn locals_are_computed_after_what_they_use_whatever_the_order() {
        let t = load_text(&format!(
            "name = \"${{local.c}}\"\nversion = \"1\"\n[variables.team]\ndefault = \"Web\"\n[locals]\nc = \"${{local.b}}-c\"\nb = \"${{local.a}}-b\"\na = \"${{lower(var.team)}}\"\n{SOURCE}"
        ))
        .expect("loads");
        let values: Vec<(&str, &Typed)> = t
            .locals
            .iter()
            .map(|l| (l.name.as_str(), &l.value))
            .collect();
        assert_eq!(
            values,
            [
                ("c", &Typed::Str("web-b-c".into())),
                ("b", &Typed::Str("web-b".into())),
                ("a", &Typed::Str("web".into())),
            ]
        );
        assert_eq!(t.name, "web-b-c");
    }

    #[test]
    fn a_cycle_is_reported_once_with_its_path() {
        let diags = load_text(&format!(
            "name = \"x\"\nversion = \"1\"\n[locals]\na = \"${{local.b}}\"\nb = \"${{local.c}}\"\nc = \"${{local.a}}\"\nd = \"fine\"\n{SOURCE}"
        ))
        .unwrap_err();
        let messages: Vec<String> = diags.iter().map(|d| d.message.clone()).collect();
        assert_eq!(messages, ["local `a` depends on itself: a -> b -> c -> a"]);
        assert_eq!((diags[0].line, diags[0].column), (4, 1));
    }

    #[test]
    fn a_sensitive_variable_makes_its_locals_sensitive() {
        let t = load_text(&format!(
            "name = \"x\"\nversion = \"1\"\n[variables.token]\nsensitive = true\ndefault = \"s3cr3t\"\n[locals]\nauth = \"Bearer ${{var.token}}\"\nplain = \"no\"\n{SOURCE}"
        ))
        .expect("loads");
        assert_eq!(t.secrets(), ["s3cr3t", "Bearer s3cr3t"]);
    }

    #[test]
    fn defaults_use_earlier_variables_and_take_their_type() {
        let t = load_text(&format!(
            "name = \"x\"\nversion = \"1\"\n[variables.size]\ndefault = 20\n[variables.label]\ndefault = \"size-${{var.size}}\"\n[variables.on]\ndefault = false\n{SOURCE}"
        ))
        .expect("loads");
        let vars: Vec<(String, Option<Typed>)> = t
            .variables
            .iter()
            .map(|v| (format!("{}: {}", v.name, v.kind), v.value.clone()))
            .collect();
        assert_eq!(
            vars,
            [
                ("size: number".to_string(), Some(Typed::Number(20.0))),
                (
                    "label: string".to_string(),
                    Some(Typed::Str("size-20".into()))
                ),
                ("on: bool".to_string(), Some(Typed::Bool(false))),
            ]
        );
    }
}
