//! Procedure mixes (`null=1,mnt3=8,umnt3=1`), export paths, and the precomputed request
//! templates the generator sends with only the xid patched.
use std::fmt;

use anyhow::{anyhow, bail, Context as _};

use mount_proto::mount::{procs, MNTPATHLEN, MOUNT_PROGRAM};
use mount_proto::rpc::{encode_call, AuthSys, Credential};
use mount_proto::xdr::Writer;

/// Machine name in the AUTH_SYS credential of every call.
pub const MACHINE_NAME: &[u8] = b"xdp-mountd-storm";

/// The procedures the generator can call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proc {
    /// NULL (ping).
    Null,
    /// MNT of an export path.
    Mnt,
    /// UMNT of an export path.
    Umnt,
    /// EXPORT (the export list).
    Export,
    /// DUMP (the mount list).
    Dump,
}

impl Proc {
    /// Every procedure, in the order of its name table.
    pub const ALL: [Proc; 5] = [Proc::Null, Proc::Mnt, Proc::Umnt, Proc::Export, Proc::Dump];

    /// Lower-case name as in a mix.
    pub fn name(self) -> &'static str {
        match self {
            Proc::Null => "null",
            Proc::Mnt => "mnt",
            Proc::Umnt => "umnt",
            Proc::Export => "export",
            Proc::Dump => "dump",
        }
    }

    /// The RPC procedure number.
    pub fn number(self) -> u32 {
        match self {
            Proc::Null => procs::NULL,
            Proc::Mnt => procs::MNT,
            Proc::Umnt => procs::UMNT,
            Proc::Export => procs::EXPORT,
            Proc::Dump => procs::DUMP,
        }
    }

    /// The call carries a `dirpath` argument.
    pub fn takes_path(self) -> bool {
        matches!(self, Proc::Mnt | Proc::Umnt)
    }
}

/// One procedure at one MOUNT version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProcSpec {
    /// The procedure.
    pub proc_: Proc,
    /// MOUNT version, 1..=3.
    pub vers: u32,
}

impl ProcSpec {
    /// Canonical name, e.g. `mnt3`.
    pub fn name(&self) -> String {
        format!("{}{}", self.proc_.name(), self.vers)
    }
}

impl fmt::Display for ProcSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.proc_.name(), self.vers)
    }
}

/// One entry of a mix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MixEntry {
    /// What to call.
    pub spec: ProcSpec,
    /// Relative weight (> 0; zero-weight entries are dropped while parsing).
    pub weight: u32,
    /// The name as given (lower case), used as the key in reports: `null` stays `null`.
    pub label: String,
}

/// A weighted procedure mix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    /// The entries with a non-zero weight, in the order given.
    pub entries: Vec<MixEntry>,
}

/// The default mix: mostly MNT v3, some UMNT and NULL.
pub const DEFAULT_MIX: &str = "null=1,mnt3=8,umnt3=1";

impl Mix {
    /// Parses `name[=weight],...`; a name is `null|mnt|umnt|export|dump` with an optional
    /// version 1..3 (default 3); the weight defaults to 1; weight 0 disables the entry.
    pub fn parse(text: &str) -> anyhow::Result<Mix> {
        let mut entries: Vec<MixEntry> = Vec::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, weight) = match item.split_once('=') {
                Some((n, w)) => {
                    let w: u32 = w
                        .trim()
                        .parse()
                        .with_context(|| format!("mix entry {item:?}: weight is not a number"))?;
                    (n.trim(), w)
                }
                None => (item, 1),
            };
            let label = name.to_ascii_lowercase();
            let spec = parse_spec(&label).with_context(|| format!("mix entry {item:?}"))?;
            if weight == 0 {
                continue;
            }
            if weight > 1_000_000 {
                bail!("mix entry {item:?}: weight over 1000000");
            }
            match entries.iter_mut().find(|e| e.spec == spec) {
                // `null` and `null3` are the same calls: their weights add up.
                Some(e) => e.weight += weight,
                None => entries.push(MixEntry {
                    spec,
                    weight,
                    label,
                }),
            }
        }
        if entries.is_empty() {
            bail!("the mix {text:?} has no procedure with a non-zero weight");
        }
        Ok(Mix { entries })
    }

    /// True if some entry needs export paths.
    pub fn needs_paths(&self) -> bool {
        self.entries.iter().any(|e| e.spec.proc_.takes_path())
    }

    /// The order in which entries are called: a smooth weighted round robin over one
    /// period (sum of weights), so a mix of 1:8:1 interleaves instead of bursting.
    pub fn schedule(&self) -> Vec<u16> {
        let total: i64 = self.entries.iter().map(|e| i64::from(e.weight)).sum();
        let mut current = vec![0i64; self.entries.len()];
        let mut out = Vec::with_capacity(total as usize);
        for _ in 0..total {
            let mut best = 0;
            for (i, e) in self.entries.iter().enumerate() {
                current[i] += i64::from(e.weight);
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= total;
            out.push(best as u16);
        }
        out
    }
}

/// `mnt3` → MNT v3; `null` → NULL v3.
fn parse_spec(name: &str) -> anyhow::Result<ProcSpec> {
    let split = name
        .find(|c: char| c.is_ascii_digit())
        .unwrap_or(name.len());
    let (base, vers) = name.split_at(split);
    let proc_ = Proc::ALL
        .into_iter()
        .find(|p| p.name() == base)
        .ok_or_else(|| {
            anyhow!("unknown procedure {base:?} (null, mnt, umnt, export, dump, each with an optional version 1-3)")
        })?;
    let vers = if vers.is_empty() {
        3
    } else {
        vers.parse()
            .ok()
            .filter(|v| (1..=3).contains(v))
            .ok_or_else(|| anyhow!("version {vers:?} of {base} is not 1, 2 or 3"))?
    };
    Ok(ProcSpec { proc_, vers })
}

/// Parses export paths: a comma-separated list (`--paths`) or a file with one path per
/// line, `#` comments and blank lines ignored (`--paths-file`).
pub fn parse_paths(text: &str, one_per_line: bool) -> anyhow::Result<Vec<String>> {
    let items: Vec<&str> = if one_per_line {
        text.lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .collect()
    } else {
        text.split(',').map(str::trim).collect()
    };
    let mut out = Vec::new();
    for p in items.into_iter().filter(|p| !p.is_empty()) {
        if p.len() > MNTPATHLEN {
            bail!("path of {} bytes is longer than {MNTPATHLEN}", p.len());
        }
        out.push(p.to_owned());
    }
    Ok(out)
}

/// The reply a call must get to count as answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    /// What was called.
    pub spec: ProcSpec,
    /// MNT must return status OK (otherwise any well-formed status is accepted).
    pub mount_ok: bool,
}

/// One precomputed call: the whole RPC message with xid 0, ready to be copied or sent
/// with the xid patched into bytes 0..4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// Index of the mix entry (per-procedure accounting).
    pub entry: u16,
    /// The RPC call message (xid = 0).
    pub message: Vec<u8>,
    /// What its reply must look like.
    pub expect: Expect,
}

/// All templates of a mix, and the order to use them in.
#[derive(Debug, Clone)]
pub struct Templates {
    /// The templates.
    pub templates: Vec<Template>,
    /// Per mix entry, the indices of its templates (one per path, or one).
    pub by_entry: Vec<Vec<u16>>,
    /// Mix entries in call order (one period).
    pub schedule: Vec<u16>,
    /// Report labels of the mix entries.
    pub labels: Vec<String>,
}

impl Templates {
    /// Builds a template per (entry, path); `mount_ok`: MNT must succeed.
    pub fn build(mix: &Mix, paths: &[String], mount_ok: bool) -> anyhow::Result<Templates> {
        if mix.needs_paths() && paths.is_empty() {
            bail!(
                "the mix calls MNT or UMNT but no export path was given (--paths or --paths-file)"
            );
        }
        let sys = AuthSys::new(0, MACHINE_NAME, 0, 0, &[])
            .ok_or_else(|| anyhow!("AUTH_SYS credential does not encode"))?;
        let cred = Credential::Sys(sys);
        let mut templates = Vec::new();
        let mut by_entry = Vec::new();
        for (i, e) in mix.entries.iter().enumerate() {
            let args_list: Vec<Vec<u8>> = if e.spec.proc_.takes_path() {
                paths.iter().map(|p| dirpath(p)).collect::<Result<_, _>>()?
            } else {
                vec![Vec::new()]
            };
            let mut ids = Vec::new();
            for args in args_list {
                let mut buf = vec![0u8; 128 + args.len()];
                let n = encode_call(
                    &mut buf,
                    0,
                    MOUNT_PROGRAM,
                    e.spec.vers,
                    e.spec.proc_.number(),
                    &cred,
                    &args,
                )
                .map_err(|err| anyhow!("encoding a {} call: {err}", e.spec))?;
                buf.truncate(n);
                let id = u16::try_from(templates.len())
                    .map_err(|_| anyhow!("too many (procedure, path) templates: at most 65535"))?;
                ids.push(id);
                templates.push(Template {
                    entry: i as u16,
                    message: buf,
                    expect: Expect {
                        spec: e.spec,
                        mount_ok,
                    },
                });
            }
            by_entry.push(ids);
        }
        Ok(Templates {
            templates,
            by_entry,
            schedule: mix.schedule(),
            labels: mix.entries.iter().map(|e| e.label.clone()).collect(),
        })
    }

    /// A cursor handing out template indices in mix order, cycling through the paths.
    pub fn picker(&self) -> Picker {
        Picker {
            schedule: self.schedule.clone(),
            by_entry: self.by_entry.clone(),
            pos: 0,
            path_pos: vec![0; self.by_entry.len()],
        }
    }
}

/// XDR `dirpath` argument.
fn dirpath(path: &str) -> anyhow::Result<Vec<u8>> {
    let mut buf = vec![0u8; 4 + mount_proto::xdr::padded(path.len())];
    let mut w = Writer::new(&mut buf);
    w.put_string(path.as_bytes(), MNTPATHLEN)
        .map_err(|e| anyhow!("path {path:?}: {e}"))?;
    Ok(buf)
}

/// Chooses the next template without allocating.
#[derive(Debug, Clone)]
pub struct Picker {
    schedule: Vec<u16>,
    by_entry: Vec<Vec<u16>>,
    pos: usize,
    path_pos: Vec<usize>,
}

impl Picker {
    /// Starts the cycle at `offset` (threads start at different points of the mix).
    pub fn with_offset(mut self, offset: usize) -> Self {
        if !self.schedule.is_empty() {
            self.pos = offset % self.schedule.len();
        }
        for (p, ids) in self.path_pos.iter_mut().zip(&self.by_entry) {
            *p = offset % ids.len().max(1);
        }
        self
    }

    /// The next template index.
    pub fn next_template(&mut self) -> u16 {
        let entry = usize::from(self.schedule[self.pos]);
        self.pos += 1;
        if self.pos == self.schedule.len() {
            self.pos = 0;
        }
        let ids = &self.by_entry[entry];
        let p = &mut self.path_pos[entry];
        let id = ids[*p];
        *p += 1;
        if *p == ids.len() {
            *p = 0;
        }
        id
    }
}

#[cfg(test)]
mod tests {
    use mount_proto::rpc::{Call, AUTH_SYS};
    use mount_proto::xdr::Reader;

    use super::*;

    #[test]
    fn parses_names_versions_weights() {
        let mix = Mix::parse("null=1, mnt3=8,umnt1=2,export,DUMP2=0,mnt=1").unwrap();
        let got: Vec<(String, u32, u32)> = mix
            .entries
            .iter()
            .map(|e| (e.spec.name(), e.weight, e.spec.vers))
            .collect();
        assert_eq!(
            got,
            vec![
                ("null3".into(), 1, 3),
                // mnt (= mnt3) adds to mnt3's weight.
                ("mnt3".into(), 9, 3),
                ("umnt1".into(), 2, 1),
                ("export3".into(), 1, 3),
            ]
        );
        assert_eq!(mix.entries[0].label, "null");
        assert!(mix.needs_paths());
        assert!(!Mix::parse("null,export1").unwrap().needs_paths());
    }

    #[test]
    fn rejects_bad_mixes() {
        for bad in [
            "",
            "null=0",
            "mnt4=1",
            "mnt0",
            "pathconf=1",
            "mnt3=x",
            "mnt3=-1",
            "=3",
            "mnt3=2000000",
        ] {
            assert!(Mix::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn schedule_follows_weights_and_interleaves() {
        let mix = Mix::parse("null=1,mnt3=8,umnt3=1").unwrap();
        let s = mix.schedule();
        assert_eq!(s.len(), 10);
        assert_eq!(s.iter().filter(|&&e| e == 1).count(), 8);
        assert_eq!(s.iter().filter(|&&e| e == 0).count(), 1);
        // Smooth: never more than 8 MNTs in a row even across the period boundary.
        let twice: Vec<u16> = s.iter().chain(&s).copied().collect();
        assert!(twice.windows(9).all(|w| w.iter().any(|&e| e != 1)));
    }

    #[test]
    fn paths_from_list_and_file() {
        assert_eq!(
            parse_paths(" /a, /b ,,", false).unwrap(),
            vec!["/a".to_owned(), "/b".to_owned()]
        );
        assert_eq!(
            parse_paths("# exports\n/srv/x\n\n  /srv/y # second\n", true).unwrap(),
            vec!["/srv/x".to_owned(), "/srv/y".to_owned()]
        );
        assert!(parse_paths(&"/x".repeat(600), false).is_err());
    }

    #[test]
    fn templates_decode_back_as_calls() {
        let mix = Mix::parse("null1=1,mnt3=2,umnt2=1,export3=1,dump1=1").unwrap();
        let paths = vec!["/srv".to_owned(), "/a/much/longer/path".to_owned()];
        let t = Templates::build(&mix, &paths, true).unwrap();
        // null1, 2×mnt3, 2×umnt2, export3, dump1.
        assert_eq!(t.templates.len(), 7);
        assert_eq!(t.by_entry[1].len(), 2);
        for tpl in &t.templates {
            let call = Call::parse(&tpl.message).unwrap();
            assert_eq!(call.xid, 0);
            assert_eq!(call.prog, MOUNT_PROGRAM);
            assert_eq!(call.vers, tpl.expect.spec.vers);
            assert_eq!(call.proc_, tpl.expect.spec.proc_.number());
            assert_eq!(call.cred.flavor, AUTH_SYS);
            let sys = AuthSys::parse(call.cred.body).unwrap();
            assert_eq!(sys.machine_name, MACHINE_NAME);
            if tpl.expect.spec.proc_.takes_path() {
                let mut r = Reader::new(call.args);
                let p = r.string(MNTPATHLEN).unwrap();
                assert!(r.is_empty());
                assert!(paths.iter().any(|x| x.as_bytes() == p));
            } else {
                assert!(call.args.is_empty());
            }
        }
        // Patching the xid is all a sender does.
        let mut m = t.templates[3].message.clone();
        m[..4].copy_from_slice(&0xdead_beef_u32.to_be_bytes());
        assert_eq!(Call::parse(&m).unwrap().xid, 0xdead_beef);
    }

    #[test]
    fn picker_cycles_mix_and_paths() {
        let mix = Mix::parse("mnt3=2,null=1").unwrap();
        let paths = vec!["/a".to_owned(), "/b".to_owned(), "/c".to_owned()];
        let t = Templates::build(&mix, &paths, true).unwrap();
        let mut p = t.picker();
        let seq: Vec<u16> = (0..9).map(|_| p.next_template()).collect();
        let mnt: Vec<u16> = seq.iter().copied().filter(|&i| i < 3).collect();
        assert_eq!(mnt, vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(seq.iter().filter(|&&i| i == 3).count(), 3);
    }

    #[test]
    fn mnt_without_paths_is_refused() {
        let mix = Mix::parse("mnt3").unwrap();
        assert!(Templates::build(&mix, &[], true).is_err());
        assert!(Templates::build(&Mix::parse("null").unwrap(), &[], true).is_ok());
    }
}
