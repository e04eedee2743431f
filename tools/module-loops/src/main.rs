//! module-loops: fails when two modules of a crate import each other,
//! directly or through others. `make lint` runs it on every crate of the
//! workspace.
//!
//! ```text
//! module-loops [CRATE_DIR...]
//! ```
//!
//! Without arguments it checks every member of the workspace whose
//! `Cargo.toml` is in the current directory.
//!
//! The module tree is read as rustc reads it, from each crate root
//! (`src/lib.rs`, `src/main.rs`, `src/bin/*.rs`, `tests/*.rs`,
//! `tests/*/main.rs`) through its `mod` declarations. A module depends on
//! another when it names it: in a `use`, or in any path of its code or of
//! its macros' tokens (`crate::`, `super::`, `self::`, or one of its own
//! child modules). Unit tests (`#[cfg(test)]`) do not count: a test may
//! reach anything. A parent that uses its child while the child uses the
//! parent is a loop too: the fix is a third module both use.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

fn main() -> ExitCode {
    let mut dirs: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if dirs.is_empty() {
        match workspace_members(Path::new("Cargo.toml")) {
            Ok(m) => dirs = m,
            Err(e) => {
                eprintln!("module-loops: {e:#} (usage: module-loops [CRATE_DIR...])");
                return ExitCode::from(2);
            }
        }
    }
    match run(&dirs) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("module-loops: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Checks every crate root of `dirs`; prints each loop and returns how many.
fn run(dirs: &[PathBuf]) -> Result<usize> {
    let mut loops = 0;
    let mut modules = 0;
    for dir in dirs {
        for root in crate_roots(dir)? {
            let tree = Tree::read(&root)?;
            modules += tree.modules.len();
            for l in tree.loops() {
                loops += 1;
                println!("{}: modules import each other in a loop:", root.display());
                for line in l {
                    println!("  {line}");
                }
            }
        }
    }
    if loops == 0 {
        println!("module-loops: no loop among {modules} modules");
    }
    Ok(loops)
}

/// The `[workspace] members` of a manifest, as directories beside it.
fn workspace_members(manifest: &Path) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let value: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing {}", manifest.display()))?;
    let members = value
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(|m| m.as_array())
        .with_context(|| format!("{}: no [workspace] members", manifest.display()))?;
    let base = manifest.parent().unwrap_or(Path::new("."));
    members
        .iter()
        .map(|m| {
            m.as_str()
                .map(|m| base.join(m))
                .context("a workspace member that is not a string")
        })
        .collect()
}

fn crate_roots(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut roots = Vec::new();
    for f in ["src/lib.rs", "src/main.rs"] {
        if dir.join(f).is_file() {
            roots.push(dir.join(f));
        }
    }
    for sub in ["src/bin", "tests"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for e in entries {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "rs") {
                roots.push(p);
            } else if p.join("main.rs").is_file() {
                roots.push(p.join("main.rs"));
            }
        }
    }
    roots.sort();
    if roots.is_empty() {
        bail!(
            "{}: no crate root (src/lib.rs, src/main.rs...)",
            dir.display()
        );
    }
    Ok(roots)
}

/// A module's path from the crate root; the root is the empty path.
type ModPath = Vec<String>;

fn show(m: &ModPath) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        format!("crate::{}", m.join("::"))
    }
}

/// Where a module names another: the first place, for the report.
#[derive(Debug, Clone)]
struct Site {
    file: PathBuf,
    line: usize,
}

#[derive(Debug, Default)]
struct Module {
    /// Child modules declared in this one.
    children: BTreeSet<String>,
    /// Paths this module names, each with where it first does.
    paths: Vec<(Vec<String>, Site)>,
}

struct Tree {
    modules: BTreeMap<ModPath, Module>,
}

impl Tree {
    fn read(root: &Path) -> Result<Tree> {
        let mut tree = Tree {
            modules: BTreeMap::new(),
        };
        tree.read_file(root, Vec::new(), dir_of_root(root))?;
        Ok(tree)
    }

    /// Reads the module in `file`; its own `mod x;` children live in `dir`.
    fn read_file(&mut self, file: &Path, path: ModPath, dir: PathBuf) -> Result<()> {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let ast = syn::parse_file(&text).with_context(|| format!("parsing {}", file.display()))?;
        self.read_items(&ast.items, file, path, &dir)
    }

    fn read_items(
        &mut self,
        items: &[syn::Item],
        file: &Path,
        path: ModPath,
        dir: &Path,
    ) -> Result<()> {
        let mut module = Module::default();
        let mut nested = Vec::new();
        for item in items {
            if is_test_only(item_attrs(item)) {
                continue;
            }
            match item {
                syn::Item::Mod(m) => {
                    let name = m.ident.to_string();
                    module.children.insert(name.clone());
                    let mut child = path.clone();
                    child.push(name.clone());
                    nested.push((m, child));
                }
                syn::Item::Use(u) => {
                    let mut out = Vec::new();
                    flatten_use(&u.tree, Vec::new(), &mut out);
                    let line = u.use_token.span.start().line;
                    for p in out {
                        module.paths.push((p, site(file, line)));
                    }
                }
                other => {
                    let mut v = PathCollector {
                        file,
                        out: &mut module.paths,
                    };
                    v.visit_item(other);
                }
            }
        }
        self.modules.insert(path.clone(), module);
        for (m, child) in nested {
            let name = m.ident.to_string();
            match &m.content {
                Some((_, items)) => self.read_items(items, file, child, &dir.join(&name))?,
                None => {
                    let (child_file, child_dir) = child_file(m, dir, &name)?;
                    self.read_file(&child_file, child, child_dir)?;
                }
            }
        }
        Ok(())
    }

    /// The module a path names, if it names one of this tree.
    fn resolve(&self, from: &ModPath, path: &[String]) -> Option<ModPath> {
        let (mut base, rest) = match path.first().map(String::as_str)? {
            "crate" => (Vec::new(), &path[1..]),
            "self" => (from.clone(), &path[1..]),
            "super" => {
                let mut base = from.clone();
                let mut i = 0;
                while path.get(i).map(String::as_str) == Some("super") {
                    base.pop()?;
                    i += 1;
                }
                (base, &path[i..])
            }
            // `child::item`; a lone `name` is a local, a function or a
            // type, whatever modules share its name.
            first if path.len() > 1 && self.modules.get(from)?.children.contains(first) => {
                (from.clone(), path)
            }
            _ => return None,
        };
        let mut best = base.clone();
        for seg in rest {
            base.push(seg.clone());
            if self.modules.contains_key(&base) {
                best = base.clone();
            } else {
                break;
            }
        }
        Some(best)
    }

    /// Each loop as lines: the modules in it and where each names the next.
    fn loops(&self) -> Vec<Vec<String>> {
        let mut edges: BTreeMap<&ModPath, BTreeMap<ModPath, Site>> = BTreeMap::new();
        for (from, m) in &self.modules {
            let out = edges.entry(from).or_default();
            for (p, site) in &m.paths {
                if let Some(to) = self.resolve(from, p)
                    && &to != from
                {
                    out.entry(to).or_insert_with(|| site.clone());
                }
            }
        }
        let graph: BTreeMap<ModPath, Vec<ModPath>> = edges
            .iter()
            .map(|(k, v)| ((*k).clone(), v.keys().cloned().collect()))
            .collect();
        strongly_connected(&graph)
            .into_iter()
            .filter(|c| c.len() > 1)
            .map(|component| {
                let members: BTreeSet<&ModPath> = component.iter().collect();
                let mut lines = Vec::new();
                for from in &component {
                    for (to, site) in &edges[from] {
                        if members.contains(to) {
                            lines.push(format!(
                                "{} -> {} ({}:{})",
                                show(from),
                                show(to),
                                site.file.display(),
                                site.line
                            ));
                        }
                    }
                }
                lines
            })
            .collect()
    }
}

fn site(file: &Path, line: usize) -> Site {
    Site {
        file: file.to_owned(),
        line,
    }
}

/// Where a crate root's `mod x;` files are: beside it.
fn dir_of_root(root: &Path) -> PathBuf {
    root.parent().unwrap_or(Path::new(".")).to_owned()
}

/// `name.rs` or `name/mod.rs` in `dir` (or a `#[path]`), and where that
/// module's own children live.
fn child_file(m: &syn::ItemMod, dir: &Path, name: &str) -> Result<(PathBuf, PathBuf)> {
    for a in &m.attrs {
        if a.path().is_ident("path")
            && let syn::Meta::NameValue(nv) = &a.meta
            && let syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) = &nv.value
        {
            let f = dir.join(s.value());
            let d = dir_of_root(&f);
            return Ok((f, d));
        }
    }
    let flat = dir.join(format!("{name}.rs"));
    if flat.is_file() {
        return Ok((flat, dir.join(name)));
    }
    let nested = dir.join(name).join("mod.rs");
    if nested.is_file() {
        return Ok((nested, dir.join(name)));
    }
    bail!(
        "module {name}: neither {} nor {}",
        flat.display(),
        nested.display()
    )
}

fn item_attrs(item: &syn::Item) -> &[syn::Attribute] {
    match item {
        syn::Item::Const(i) => &i.attrs,
        syn::Item::Enum(i) => &i.attrs,
        syn::Item::ExternCrate(i) => &i.attrs,
        syn::Item::Fn(i) => &i.attrs,
        syn::Item::ForeignMod(i) => &i.attrs,
        syn::Item::Impl(i) => &i.attrs,
        syn::Item::Macro(i) => &i.attrs,
        syn::Item::Mod(i) => &i.attrs,
        syn::Item::Static(i) => &i.attrs,
        syn::Item::Struct(i) => &i.attrs,
        syn::Item::Trait(i) => &i.attrs,
        syn::Item::TraitAlias(i) => &i.attrs,
        syn::Item::Type(i) => &i.attrs,
        syn::Item::Union(i) => &i.attrs,
        syn::Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

/// `#[cfg(test)]`, alone: code that exists only in unit tests.
fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg") && a.parse_args::<syn::Ident>().is_ok_and(|i| i == "test")
    })
}

fn flatten_use(tree: &syn::UseTree, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let with = |seg: String| {
        let mut p = prefix.clone();
        p.push(seg);
        p
    };
    match tree {
        syn::UseTree::Path(p) => flatten_use(&p.tree, with(p.ident.to_string()), out),
        syn::UseTree::Name(n) => out.push(with(n.ident.to_string())),
        syn::UseTree::Rename(r) => out.push(with(r.ident.to_string())),
        syn::UseTree::Glob(_) => out.push(prefix),
        syn::UseTree::Group(g) => g
            .items
            .iter()
            .for_each(|t| flatten_use(t, prefix.clone(), out)),
    }
}

/// Every path in an item's code, and the `crate::`/`super::`/`self::`
/// paths in its macros' tokens; nested test code is left out.
struct PathCollector<'a> {
    file: &'a Path,
    out: &'a mut Vec<(Vec<String>, Site)>,
}

impl<'ast> Visit<'ast> for PathCollector<'_> {
    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segs: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        if let Some(first) = p.segments.first() {
            let line = first.ident.span().start().line;
            self.out.push((segs, site(self.file, line)));
        }
        syn::visit::visit_path(self, p);
    }

    /// `pub(crate)`, `pub(super)`, `pub(in path)` say who may see an item,
    /// not what it uses.
    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {}

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        self.visit_path(&m.path);
        self.tokens(m.tokens.clone());
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        if !is_test_only(&f.attrs) {
            syn::visit::visit_item_fn(self, f);
        }
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        if !is_test_only(&f.attrs) {
            syn::visit::visit_impl_item_fn(self, f);
        }
    }
}

impl PathCollector<'_> {
    /// `crate :: a :: b` (or `super`, `self`) runs in a token stream.
    fn tokens(&mut self, tokens: TokenStream) {
        let trees: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < trees.len() {
            if let TokenTree::Group(g) = &trees[i] {
                self.tokens(g.stream());
            }
            if let TokenTree::Ident(id) = &trees[i]
                && ["crate", "super", "self"].contains(&id.to_string().as_str())
                && is_path_sep(&trees, i + 1)
            {
                let line = id.span().start().line;
                let mut segs = vec![id.to_string()];
                let mut j = i + 1;
                while is_path_sep(&trees, j) {
                    let Some(TokenTree::Ident(next)) = trees.get(j + 2) else {
                        break;
                    };
                    segs.push(next.to_string());
                    j += 3;
                }
                self.out.push((segs, site(self.file, line)));
                i = j;
                continue;
            }
            i += 1;
        }
    }
}

fn is_path_sep(trees: &[TokenTree], i: usize) -> bool {
    matches!(
        (trees.get(i), trees.get(i + 1)),
        (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b))) if a.as_char() == ':' && b.as_char() == ':'
    )
}

/// Tarjan's strongly connected components, each in discovery order.
fn strongly_connected(graph: &BTreeMap<ModPath, Vec<ModPath>>) -> Vec<Vec<ModPath>> {
    struct State<'a> {
        graph: &'a BTreeMap<ModPath, Vec<ModPath>>,
        index: BTreeMap<&'a ModPath, usize>,
        low: BTreeMap<&'a ModPath, usize>,
        stack: Vec<&'a ModPath>,
        on_stack: BTreeSet<&'a ModPath>,
        out: Vec<Vec<ModPath>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a ModPath) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flatten() {
            let Some((w, _)) = s.graph.get_key_value(w) else {
                continue;
            };
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.clone());
                if w == v {
                    break;
                }
            }
            component.reverse();
            s.out.push(component);
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A crate of `files` (path, text) in a fresh directory.
    fn krate(files: &[(&str, &str)]) -> tempdir::Dir {
        let d = tempdir::Dir::new();
        for (p, text) in files {
            let f = d.0.join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, text).unwrap();
        }
        d
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                use std::sync::atomic::{AtomicUsize, Ordering};
                static N: AtomicUsize = AtomicUsize::new(0);
                let p = std::env::temp_dir().join(format!(
                    "module-loops-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn loops_of(files: &[(&str, &str)]) -> Vec<Vec<String>> {
        let d = krate(files);
        Tree::read(&d.0.join("src/lib.rs")).unwrap().loops()
    }

    #[test]
    fn a_crate_whose_modules_import_one_way_has_no_loop() {
        let l = loops_of(&[
            (
                "src/lib.rs",
                "mod a; mod b; pub use a::A; fn f() { b::g(); }",
            ),
            (
                "src/a.rs",
                "pub struct A; fn f() -> crate::b::B { todo!() }",
            ),
            ("src/b/mod.rs", "mod c; pub struct B; pub fn g() { c::h() }"),
            ("src/b/c.rs", "pub fn h() {}"),
        ]);
        assert!(l.is_empty(), "{l:?}");
    }

    #[test]
    fn a_loop_through_a_third_module_is_found_with_where_each_link_is() {
        let l = loops_of(&[
            ("src/lib.rs", "mod a; mod b; mod c;"),
            ("src/a.rs", "use crate::b::B;\npub struct A;"),
            ("src/b.rs", "pub struct B(crate::c::C);"),
            (
                "src/c.rs",
                "pub struct C;\nfn f() { let _ = format!(\"{:?}\", crate::a::A); }",
            ),
        ]);
        assert_eq!(l.len(), 1, "{l:?}");
        let text = l[0].join("\n");
        assert!(text.contains("crate::a -> crate::b"), "{text}");
        assert!(text.contains("crate::b -> crate::c"), "{text}");
        assert!(text.contains("crate::c -> crate::a"), "{text}");
        assert!(text.contains("c.rs:2"), "{text}");
    }

    #[test]
    fn a_child_that_uses_its_parent_which_uses_it_is_a_loop() {
        let l = loops_of(&[
            ("src/lib.rs", "mod m;"),
            ("src/m/mod.rs", "mod k; pub struct P; fn f() { k::g() }"),
            ("src/m/k.rs", "use super::P; pub fn g() {}"),
        ]);
        assert_eq!(l.len(), 1, "{l:?}");
    }

    #[test]
    fn a_local_named_like_a_child_module_is_not_the_module() {
        let l = loops_of(&[
            (
                "src/lib.rs",
                "mod wal; pub struct S; fn f() { let wal = 1; let _ = wal; }",
            ),
            ("src/wal.rs", "impl crate::S { fn g(&self) {} }"),
        ]);
        assert!(l.is_empty(), "{l:?}");
    }

    #[test]
    fn visibility_is_not_a_dependency() {
        let l = loops_of(&[
            ("src/lib.rs", "mod m; pub use m::k::g;"),
            ("src/m/mod.rs", "pub mod k; pub(crate) fn f() { k::g() }"),
            (
                "src/m/k.rs",
                "pub(super) fn g() {} pub(crate) struct S; pub(in crate::m) struct T;",
            ),
        ]);
        assert!(l.is_empty(), "{l:?}");
    }

    #[test]
    fn unit_tests_may_reach_anything() {
        let l = loops_of(&[
            ("src/lib.rs", "mod a; mod b;"),
            ("src/a.rs", "pub fn f() { crate::b::g() }"),
            (
                "src/b.rs",
                "pub fn g() {}\n#[cfg(test)]\nmod tests { use crate::a::f; }",
            ),
        ]);
        assert!(l.is_empty(), "{l:?}");
    }
}
