//! Building a register from what the centre already has: a plain CSV, a
//! GLPI computer export, and ISTAT's list of comuni. Each importer writes a
//! register in TOML, which is then validated like a hand-written one.
//!
//! CSV files from Italian spreadsheets are often `;`-separated and in
//! Windows-1252: the separator is detected from the header line, and text
//! that is not UTF-8 is read as Latin-1.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Serialize;

use crate::host::{normalize_hostname, normalize_mac};
use crate::register::{Comune, Register, RegisterError};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{origin}: cannot read: {source}")]
    Read {
        origin: String,
        source: std::io::Error,
    },
    #[error("{origin}, line {line}: {reason}")]
    Row {
        origin: String,
        line: u64,
        reason: String,
    },
    #[error("{origin}: {reason}")]
    Header { origin: String, reason: String },
    #[error("the imported register is not valid: {0}")]
    Register(#[from] RegisterError),
}

/// The register as written to TOML.
#[derive(Debug, Default, Serialize)]
pub struct RegisterFile {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub comune: Vec<ComuneEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub site: Vec<SiteEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub asset: Vec<AssetEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ComuneEntry {
    pub istat_code: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub province: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SiteEntry {
    pub id: String,
    pub comune: String,
    pub name: String,
    pub kind: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AssetEntry {
    pub site: String,
    pub role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl RegisterFile {
    /// TOML text, checked by parsing it back as a register.
    pub fn to_toml(&self, header: &str) -> Result<String, ImportError> {
        let body = toml::to_string(self).map_err(|e| ImportError::Header {
            origin: "register".into(),
            reason: e.to_string(),
        })?;
        let text = format!("{header}{body}");
        Register::parse(&text, "imported register")?;
        Ok(text)
    }

    /// Adds the comuni and sites of an existing register (GLPI and CSV rows
    /// can then refer to them).
    pub fn from_register(r: &Register) -> Self {
        Self {
            comune: r
                .comuni
                .iter()
                .map(|c| ComuneEntry {
                    istat_code: c.istat_code.clone(),
                    name: c.name.clone(),
                    province: c.province.clone(),
                })
                .collect(),
            site: r
                .sites
                .iter()
                .map(|s| SiteEntry {
                    id: s.id.clone(),
                    comune: s.istat_code.clone(),
                    name: s.name.clone(),
                    kind: s.kind.clone(),
                })
                .collect(),
            asset: Vec::new(),
        }
    }
}

/// A CSV file read into rows of named columns.
struct Table {
    origin: String,
    headers: Vec<String>,
    rows: Vec<(u64, Vec<String>)>,
}

impl Table {
    fn read(path: &Path) -> Result<Self, ImportError> {
        let origin = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| ImportError::Read {
            origin: origin.clone(),
            source,
        })?;
        Self::parse(&bytes, &origin)
    }

    fn parse(bytes: &[u8], origin: &str) -> Result<Self, ImportError> {
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => t.to_owned(),
            // Windows-1252 and Latin-1 agree on every letter Italian uses.
            Err(_) => bytes.iter().map(|&b| char::from(b)).collect(),
        };
        let text = text.trim_start_matches('\u{feff}');
        let first = text.lines().next().unwrap_or_default();
        let delimiter = if first.matches(';').count() > first.matches(',').count() {
            b';'
        } else {
            b','
        };
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .flexible(true)
            .from_reader(text.as_bytes());
        let headers = reader
            .headers()
            .map_err(|e| ImportError::Header {
                origin: origin.to_owned(),
                reason: e.to_string(),
            })?
            .iter()
            .map(|h| h.trim().to_lowercase())
            .collect();
        let mut rows = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|e| ImportError::Row {
                origin: origin.to_owned(),
                line: e.position().map_or(0, |p| p.line()),
                reason: e.to_string(),
            })?;
            let line = record.position().map_or(0, |p| p.line());
            if record.iter().all(|f| f.trim().is_empty()) {
                continue;
            }
            rows.push((line, record.iter().map(|f| f.trim().to_owned()).collect()));
        }
        Ok(Self {
            origin: origin.to_owned(),
            headers,
            rows,
        })
    }

    /// Index of the first column whose header is one of `names` (or, for
    /// names ending in `*`, starts with it).
    fn column(&self, names: &[&str]) -> Option<usize> {
        names.iter().find_map(|n| {
            self.headers.iter().position(|h| match n.strip_suffix('*') {
                Some(prefix) => h.starts_with(prefix),
                None => h == n,
            })
        })
    }

    fn require(&self, what: &str, names: &[&str]) -> Result<usize, ImportError> {
        self.column(names).ok_or_else(|| ImportError::Header {
            origin: self.origin.clone(),
            reason: format!(
                "no {what} column (looked for: {}; found: {})",
                names.join(", "),
                self.headers.join(", ")
            ),
        })
    }

    fn err(&self, line: u64, reason: String) -> ImportError {
        ImportError::Row {
            origin: self.origin.clone(),
            line,
            reason,
        }
    }
}

fn cell(row: &[String], col: Option<usize>) -> Option<String> {
    col.and_then(|c| row.get(c))
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Plain CSV, one row per asset (a row without hostname, serial and MAC
/// only declares its comune and site). Columns: `istat_code`, `comune`,
/// `province`, `site_id`, `site_name`, `site_kind`, `role`, `hostname`,
/// `serial`, `mac`, `name`.
pub fn from_csv(path: &Path) -> Result<RegisterFile, ImportError> {
    from_csv_table(&Table::read(path)?)
}

/// [`from_csv`] of bytes already read (an upload, a fuzzer).
pub fn from_csv_bytes(bytes: &[u8], origin: &str) -> Result<RegisterFile, ImportError> {
    from_csv_table(&Table::parse(bytes, origin)?)
}

fn from_csv_table(t: &Table) -> Result<RegisterFile, ImportError> {
    let c_code = t.require("istat_code", &["istat_code", "codice istat"])?;
    let c_name = t.column(&["comune", "comune_name"]);
    let c_prov = t.column(&["province", "provincia"]);
    let c_site = t.require("site_id", &["site_id", "site"])?;
    let c_site_name = t.column(&["site_name"]);
    let c_kind = t.column(&["site_kind", "kind"]);
    let c_role = t.column(&["role", "ruolo"]);
    let c_host = t.column(&["hostname"]);
    let c_serial = t.column(&["serial", "serial_number"]);
    let c_mac = t.column(&["mac", "mac_address"]);
    let c_asset_name = t.column(&["name", "asset_name"]);

    let mut out = Builder::default();
    for (line, row) in &t.rows {
        let code =
            cell(row, Some(c_code)).ok_or_else(|| t.err(*line, "istat_code is empty".into()))?;
        let code = pad_istat(&code);
        let site = cell(row, Some(c_site))
            .ok_or_else(|| t.err(*line, "site_id is empty".into()))?
            .to_lowercase();
        out.comune(
            &code,
            cell(row, c_name).unwrap_or_else(|| code.clone()),
            cell(row, c_prov),
        );
        out.site(
            &site,
            &code,
            cell(row, c_site_name).unwrap_or_else(|| site.clone()),
            cell(row, c_kind).unwrap_or_else(|| "other".into()),
        );
        out.asset(
            *line,
            &t.origin,
            &site,
            cell(row, c_role).unwrap_or_else(|| "pc".into()),
            cell(row, c_host),
            cell(row, c_serial),
            cell(row, c_mac),
            cell(row, c_asset_name),
        )?;
    }
    Ok(out.finish())
}

/// ISTAT's "Elenco comuni italiani" (CSV from istat.it), optionally only
/// some provinces (by their two-letter code, "Sigla automobilistica").
pub fn from_istat(path: &Path, provinces: &[String]) -> Result<RegisterFile, ImportError> {
    from_istat_table(&Table::read(path)?, provinces)
}

/// [`from_istat`] of bytes already read.
pub fn from_istat_bytes(
    bytes: &[u8],
    origin: &str,
    provinces: &[String],
) -> Result<RegisterFile, ImportError> {
    from_istat_table(&Table::parse(bytes, origin)?, provinces)
}

fn from_istat_table(t: &Table, provinces: &[String]) -> Result<RegisterFile, ImportError> {
    let c_code = t.require(
        "comune code",
        &[
            "codice comune formato alfanumerico*",
            "codice comune*",
            "pro_com_t",
        ],
    )?;
    let c_name = t.require(
        "comune name",
        &["denominazione in italiano*", "denominazione*", "comune"],
    )?;
    let c_prov = t.column(&["sigla automobilistica*", "sigla*"]);
    let wanted: Vec<String> = provinces.iter().map(|p| p.to_uppercase()).collect();
    let mut out = RegisterFile::default();
    for (line, row) in &t.rows {
        let code = cell(row, Some(c_code)).ok_or_else(|| t.err(*line, "no code".into()))?;
        let code = pad_istat(&code);
        let name = cell(row, Some(c_name)).ok_or_else(|| t.err(*line, "no name".into()))?;
        let province = cell(row, c_prov).map(|p| p.to_uppercase());
        if !wanted.is_empty() && !province.as_ref().is_some_and(|p| wanted.contains(p)) {
            continue;
        }
        out.comune.push(ComuneEntry {
            istat_code: code,
            name,
            province,
        });
    }
    out.comune.sort_by(|a, b| a.istat_code.cmp(&b.istat_code));
    Ok(out)
}

/// A GLPI computer list exported as CSV ("Export" from Assets > Computers).
/// The entity's last level names the comune, matched by name against
/// `comuni` ("Comune di Borgo Tossignano" ~ "Borgo Tossignano"); the
/// location's first level becomes the site. Headers may be in English or
/// Italian.
pub fn from_glpi(path: &Path, comuni: &Register) -> Result<RegisterFile, ImportError> {
    from_glpi_table(&Table::read(path)?, comuni)
}

/// [`from_glpi`] of bytes already read.
pub fn from_glpi_bytes(
    bytes: &[u8],
    origin: &str,
    comuni: &Register,
) -> Result<RegisterFile, ImportError> {
    from_glpi_table(&Table::parse(bytes, origin)?, comuni)
}

fn from_glpi_table(t: &Table, comuni: &Register) -> Result<RegisterFile, ImportError> {
    let c_name = t.require("name", &["name", "nome"])?;
    let c_entity = t.require("entity", &["entity", "entità", "entita"])?;
    let c_location = t.column(&["location", "luogo", "ubicazione"]);
    let c_serial = t.column(&["serial number", "numero di serie", "serial"]);
    let c_type = t.column(&["type", "tipo", "computer types", "tipi di computer"]);
    let c_mac = t.column(&[
        "network ports - mac*",
        "porte di rete - indirizzo mac*",
        "mac*",
    ]);

    let by_name: HashMap<String, &Comune> = comuni
        .comuni
        .iter()
        .map(|c| (comparable_name(&c.name), c))
        .collect();
    let mut out = Builder::default();
    for c in &comuni.comuni {
        out.comune(&c.istat_code, c.name.clone(), c.province.clone());
    }
    for s in &comuni.sites {
        out.site(&s.id, &s.istat_code, s.name.clone(), s.kind.clone());
    }
    for (line, row) in &t.rows {
        let entity = cell(row, Some(c_entity)).unwrap_or_default();
        let leaf = entity.rsplit('>').next().unwrap_or_default().trim();
        let comune = by_name.get(&comparable_name(leaf)).ok_or_else(|| {
            t.err(
                *line,
                format!("entity {entity:?}: no comune named {leaf:?} in the comuni list"),
            )
        })?;
        let location = cell(row, c_location)
            .map(|l| l.split('>').next().unwrap_or_default().trim().to_owned())
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| "Sede".into());
        let site = format!("{}-{}", slug(&comune.name), slug(&location));
        let site = site
            .get(..63)
            .unwrap_or(&site)
            .trim_end_matches('-')
            .to_owned();
        out.site(
            &site,
            &comune.istat_code,
            location.clone(),
            guess_kind(&location).into(),
        );
        let mac = cell(row, c_mac).and_then(|m| {
            // GLPI lists every port's MAC in one cell: plan the first.
            m.split(|c: char| c == '\n' || c == ',' || c == '|' || c.is_whitespace())
                .find_map(normalize_mac)
        });
        let name = cell(row, Some(c_name));
        out.asset(
            *line,
            &t.origin,
            &site,
            guess_role(cell(row, c_type).as_deref().unwrap_or_default()).into(),
            name.as_deref().map(normalize_hostname),
            cell(row, c_serial),
            mac,
            name,
        )?;
    }
    Ok(out.finish())
}

/// Accumulates comuni, sites and assets in first-seen order, refusing
/// contradictions (a site in two comuni).
#[derive(Default)]
struct Builder {
    comuni: BTreeMap<String, ComuneEntry>,
    sites: Vec<SiteEntry>,
    site_index: HashMap<String, usize>,
    assets: Vec<AssetEntry>,
}

impl Builder {
    fn comune(&mut self, code: &str, name: String, province: Option<String>) {
        self.comuni
            .entry(code.to_owned())
            .or_insert_with(|| ComuneEntry {
                istat_code: code.to_owned(),
                name,
                province,
            });
    }

    fn site(&mut self, id: &str, comune: &str, name: String, kind: String) {
        if !self.site_index.contains_key(id) {
            self.site_index.insert(id.to_owned(), self.sites.len());
            self.sites.push(SiteEntry {
                id: id.to_owned(),
                comune: comune.to_owned(),
                name,
                kind,
            });
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn asset(
        &mut self,
        line: u64,
        origin: &str,
        site: &str,
        role: String,
        hostname: Option<String>,
        serial: Option<String>,
        mac: Option<String>,
        name: Option<String>,
    ) -> Result<(), ImportError> {
        if hostname.is_none() && serial.is_none() && mac.is_none() {
            return Ok(());
        }
        let mac = match mac {
            Some(m) => Some(normalize_mac(&m).ok_or_else(|| ImportError::Row {
                origin: origin.to_owned(),
                line,
                reason: format!("MAC {m:?} is not six hex bytes"),
            })?),
            None => None,
        };
        self.assets.push(AssetEntry {
            site: site.to_owned(),
            role,
            hostname,
            serial,
            mac,
            name,
        });
        Ok(())
    }

    fn finish(self) -> RegisterFile {
        RegisterFile {
            comune: self.comuni.into_values().collect(),
            site: self.sites,
            asset: self.assets,
        }
    }
}

/// ISTAT codes lose their leading zeros in spreadsheets: "37006" -> "037006".
fn pad_istat(code: &str) -> String {
    if code.len() < 6 && code.bytes().all(|b| b.is_ascii_digit()) {
        format!("{code:0>6}")
    } else {
        code.to_owned()
    }
}

/// Lower case, accents folded, "Comune di" dropped, spaces collapsed.
fn comparable_name(name: &str) -> String {
    let folded: String = name
        .to_lowercase()
        .chars()
        .map(fold_accent)
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect();
    let words: Vec<&str> = folded.split_whitespace().collect();
    let words = match words.as_slice() {
        ["comune", "di", rest @ ..] if !rest.is_empty() => rest,
        w => w,
    };
    words.join(" ")
}

fn fold_accent(c: char) -> char {
    match c {
        'à' | 'á' | 'â' | 'ä' => 'a',
        'è' | 'é' | 'ê' | 'ë' => 'e',
        'ì' | 'í' | 'î' | 'ï' => 'i',
        'ò' | 'ó' | 'ô' | 'ö' => 'o',
        'ù' | 'ú' | 'û' | 'ü' => 'u',
        c => c,
    }
}

/// A site id from a name: "Scuola Primaria «G. Verdi»" -> "scuola-primaria-g-verdi".
pub fn slug(name: &str) -> String {
    comparable_name(name).replace(' ', "-")
}

fn guess_kind(location: &str) -> &'static str {
    let l = comparable_name(location);
    if l.contains("municipio") || l.contains("sede comunale") || l.contains("palazzo comunale") {
        "town_hall"
    } else if l.contains("scuola") || l.contains("istituto") {
        "school"
    } else if l.contains("biblioteca") {
        "library"
    } else if l.contains("magazzino") || l.contains("deposito") {
        "depot"
    } else {
        "office"
    }
}

fn guess_role(glpi_type: &str) -> &'static str {
    let t = comparable_name(glpi_type);
    if t.contains("server") {
        "server"
    } else if t.contains("router") {
        "router"
    } else {
        "pc"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &[u8]) -> Table {
        Table::parse(text, "t.csv").unwrap()
    }

    #[test]
    fn plain_csv_becomes_a_valid_register() {
        let csv = "istat_code;comune;province;site_id;site_name;site_kind;role;hostname;serial;mac;name\n\
                   37006;Borgo Tossignano;BO;borgo-municipio;Municipio;town_hall;pc;PC-01;SN1;aa-bb-cc-dd-ee-01;\"Anagrafe; sportello\"\n\
                   37006;Borgo Tossignano;BO;borgo-scuola;Scuola;school;;;;;\n";
        let r = from_csv_table(&table(csv.as_bytes())).unwrap();
        let text = r.to_toml("").unwrap();
        let reg = Register::parse(&text, "t").unwrap();
        assert_eq!(reg.comuni[0].istat_code, "037006");
        assert_eq!(reg.sites.len(), 2);
        assert_eq!(reg.assets.len(), 1);
        assert_eq!(reg.assets[0].hostname.as_deref(), Some("pc-01"));
        assert_eq!(reg.assets[0].name.as_deref(), Some("Anagrafe; sportello"));
    }

    #[test]
    fn csv_errors_name_the_line() {
        let csv = "istat_code,site_id,hostname,mac\n037006,s1,pc1,\n037006,s1,pc2,zz\n";
        let e = from_csv_table(&table(csv.as_bytes()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3") && e.contains("MAC"), "{e}");
    }

    #[test]
    fn istat_list_in_latin1_filters_by_province() {
        // "Denominazione in italiano" with "Sant'Agata" and "Città" in Latin-1.
        let mut bytes = b"Codice Regione;Codice Comune formato alfanumerico;Denominazione in italiano;Sigla automobilistica\n".to_vec();
        bytes.extend_from_slice(b"08;037006;Borgo Tossignano;BO\n");
        bytes.extend_from_slice(b"08;037054;Sant'Agata Bolognese;BO\n");
        bytes.extend_from_slice(b"08;040007;Citt\xe0 di Prova;FC\n");
        let r = from_istat_table(&table(&bytes), &["bo".into()]).unwrap();
        assert_eq!(r.comune.len(), 2);
        let all = from_istat_table(&table(&bytes), &[]).unwrap();
        assert_eq!(all.comune[2].name, "Città di Prova");
        all.to_toml("").unwrap();
    }

    #[test]
    fn glpi_export_maps_entity_to_comune_and_location_to_site() {
        let comuni = Register::parse(
            "[[comune]]\nistat_code = \"037006\"\nname = \"Borgo Tossignano\"\n\
             [[comune]]\nistat_code = \"037031\"\nname = \"Fontanelice\"\n",
            "c",
        )
        .unwrap();
        let csv = "\"Nome\";\"Entità\";\"Numero di serie\";\"Tipo\";\"Luogo\";\"Porte di rete - Indirizzo MAC\"\n\
                   \"PC-ANAGRAFE\";\"Entità radice > Comune di Borgo Tossignano\";\"SN-1\";\"Desktop\";\"Municipio > Anagrafe\";\"aa:bb:cc:dd:ee:01\"\n\
                   \"SRV01\";\"Entità radice > Comune di Fontanelice\";\"\";\"Server\";\"Biblioteca\";\"\"\n";
        let r = from_glpi_table(&table(csv.as_bytes()), &comuni).unwrap();
        let reg = Register::parse(&r.to_toml("").unwrap(), "t").unwrap();
        assert_eq!(reg.sites[0].id, "borgo-tossignano-municipio");
        assert_eq!(reg.sites[0].kind, "town_hall");
        assert_eq!(reg.sites[1].kind, "library");
        assert_eq!(reg.assets[1].role, "server");
        assert_eq!(reg.assets[0].mac.as_deref(), Some("aa:bb:cc:dd:ee:01"));
        let unknown = csv.replace("Fontanelice\"", "Atlantide\"");
        let e = from_glpi_table(&table(unknown.as_bytes()), &comuni)
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3") && e.contains("Atlantide"), "{e}");
    }
}
