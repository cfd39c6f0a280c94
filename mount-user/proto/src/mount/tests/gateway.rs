//! Gateway mode: handles learned from upstream, as the core serves them.
use super::*;
use crate::exports::FileHandle;
use crate::mount::client::MntAnswer;
use crate::mount::learned::{Learned, LearnedHandles};

const EXPORTS: &str = "\
/srv/a 10.0.0.0/8(rw,insecure)
/srv/fixed 10.0.0.0/8(insecure,fh=0102030405)
";
const CLIENT: &str = "10.1.2.3:700";

fn fh(bytes: &[u8]) -> MntAnswer {
    MntAnswer::Handle(FileHandle::from_bytes(bytes).unwrap())
}

fn ask(
    env: &Env,
    handles: &LearnedHandles,
    waited: bool,
    vers: u32,
    path: &[u8],
) -> (Outcome, Vec<u8>) {
    let req = call(0x77, vers, procs::MNT, &path_arg(path));
    let client = Client {
        addr: CLIENT.parse().unwrap(),
        host: None,
    };
    let ctx = Context {
        exports: &env.table,
        mounts: &env.mounts,
        policy: &env.policy,
        upstream: Some(Gateway { handles, waited }),
    };
    let mut out = vec![0u8; 1024];
    let outcome = answer(&req, &client, &ctx, &mut out);
    let len = match outcome {
        Outcome::Reply { len, .. } => len,
        _ => 0,
    };
    out.truncate(len);
    (outcome, out)
}

/// The status word and the handle bytes (v3: counted; v1: the fixed 32).
fn status_and_handle(reply: &[u8], vers: u32) -> (u32, Vec<u8>) {
    let results = success_results(reply, 0x77);
    let res = if vers == 3 {
        decode_mountres3(&results).map(|(handle, _)| handle)
    } else {
        decode_fhstatus(&results)
    };
    match res {
        Ok(handle) => (0, handle),
        Err(status) => (status, Vec::new()),
    }
}

#[test]
fn learned_root_and_subdirectory_handles_are_served_byte_for_byte() {
    let env = Env::new(EXPORTS);
    let mut handles = LearnedHandles::new();
    let root: Vec<u8> = (1..=24).collect();
    handles.insert(
        "/srv/a",
        Learned {
            v3: fh(&root),
            v1: Some(MntAnswer::Status(13)),
        },
    );
    handles.insert(
        "/srv/a/sub",
        Learned {
            v3: fh(&[9; 40]),
            v1: Some(fh(&[8; 32])),
        },
    );
    let (_, reply) = ask(&env, &handles, false, 3, b"/srv/a");
    assert_eq!(status_and_handle(&reply, 3), (0, root));
    // Normalised before the lookup.
    let (_, reply) = ask(&env, &handles, false, 3, b"/srv/a//sub/");
    assert_eq!(status_and_handle(&reply, 3), (0, vec![9; 40]));
    let (_, reply) = ask(&env, &handles, false, 1, b"/srv/a/sub");
    assert_eq!(status_and_handle(&reply, 1), (0, vec![8; 32]));
    // Upstream's own v1 refusal is passed on.
    let (_, reply) = ask(&env, &handles, false, 1, b"/srv/a");
    assert_eq!(status_and_handle(&reply, 1).0, 13);
    assert_eq!(
        env.mount_list(),
        vec![
            ("10.1.2.3".to_string(), "/srv/a".to_string()),
            ("10.1.2.3".to_string(), "/srv/a/sub".to_string())
        ]
    );
}

#[test]
fn unlearned_paths_ask_the_shell_then_get_the_documented_status() {
    let env = Env::new(EXPORTS);
    let handles = LearnedHandles::new();
    assert_eq!(
        ask(&env, &handles, false, 3, b"/srv/a/new").0,
        Outcome::NeedUpstream
    );
    assert_eq!(
        ask(&env, &handles, false, 1, b"/srv/a").0,
        Outcome::NeedUpstream
    );
    let (_, reply) = ask(&env, &handles, true, 3, b"/srv/a/new");
    assert_eq!(status_and_handle(&reply, 3).0, UNLEARNED_V3 as u32);
    let (_, reply) = ask(&env, &handles, true, 2, b"/srv/a");
    assert_eq!(status_and_handle(&reply, 2).0, UNLEARNED_V1 as u32);
    // Nothing a client did not get a handle for goes on the mount list.
    assert!(env.mount_list().is_empty());
}

#[test]
fn upstream_statuses_pass_through_and_v1_without_upstream_v1_is_acces() {
    let env = Env::new(EXPORTS);
    let mut handles = LearnedHandles::new();
    handles.insert(
        "/srv/a",
        Learned {
            v3: MntAnswer::Status(2),
            v1: None,
        },
    );
    handles.insert(
        "/srv/a/x",
        Learned {
            v3: fh(&[5; 8]),
            v1: None,
        },
    );
    let (_, reply) = ask(&env, &handles, false, 3, b"/srv/a");
    assert_eq!(status_and_handle(&reply, 3).0, 2);
    let (_, reply) = ask(&env, &handles, false, 1, b"/srv/a/x");
    assert_eq!(status_and_handle(&reply, 1).0, MountStat::Acces as u32);
}

#[test]
fn local_policy_and_fh_still_win() {
    let env = Env::new(EXPORTS);
    let mut handles = LearnedHandles::new();
    handles.insert(
        "/srv/fixed",
        Learned {
            v3: fh(&[7; 16]),
            v1: None,
        },
    );
    let (_, reply) = ask(&env, &handles, false, 3, b"/srv/fixed");
    assert_eq!(status_and_handle(&reply, 3), (0, vec![1, 2, 3, 4, 5]));
    // Not exported locally: NOENT without asking upstream.
    let (_, reply) = ask(&env, &handles, false, 3, b"/srv/other");
    assert_eq!(status_and_handle(&reply, 3).0, MountStat::NoEnt as u32);
    // A refused client never reaches upstream either.
    let req = call(0x77, 3, procs::MNT, &path_arg(b"/srv/a"));
    let client = Client {
        addr: "192.168.0.1:700".parse().unwrap(),
        host: None,
    };
    let ctx = Context {
        exports: &env.table,
        mounts: &env.mounts,
        policy: &env.policy,
        upstream: Some(Gateway {
            handles: &handles,
            waited: false,
        }),
    };
    let mut out = [0u8; 256];
    let Outcome::Reply { len, .. } = answer(&req, &client, &ctx, &mut out) else {
        panic!("no reply");
    };
    assert_eq!(status_and_handle(&out[..len], 3).0, MountStat::Acces as u32);
}
