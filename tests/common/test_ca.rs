//! A certificate authority made at test time with the `openssl` command
//! line tool (Debian's `openssl`, which `scripts/test` installs when it is
//! missing): a CA, server certificates it signs for the names a test
//! chooses, and client certificates (SASL EXTERNAL). P-256 keys, valid
//! for two days; the files are PEM, readable by every user (the daemons
//! drop root).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A test CA in a directory of its own.
#[derive(Debug)]
pub struct TestCa {
    dir: PathBuf,
}

/// A certificate and its key, as files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    /// Makes a CA in `dir` (created if missing).
    pub fn new(dir: &Path) -> TestCa {
        fs::create_dir_all(dir).expect("create the CA's directory");
        let ca = TestCa {
            dir: dir.to_owned(),
        };
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=socketscience test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        // RFC 7919's ffdhe2048 group (ngIRCd generates its own DH
        // parameters otherwise, which takes seconds at every start).
        openssl(
            dir,
            &[
                "genpkey",
                "-genparam",
                "-algorithm",
                "DH",
                "-pkeyopt",
                "group:ffdhe2048",
                "-out",
                "dh.pem",
            ],
        );
        ca.readable();
        ca
    }

    /// The CA's certificate, for `IrcChat::tls_ca_file`.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The DH parameters file for a daemon.
    pub fn dh_file(&self) -> PathBuf {
        self.dir.join("dh.pem")
    }

    /// A server certificate `stem.pem` (key `stem.key`) for `names`
    /// (DNS names, or IP addresses).
    pub fn server(&self, stem: &str, names: &[&str]) -> CertFiles {
        let alt: Vec<String> = names
            .iter()
            .map(|n| {
                if n.parse::<std::net::IpAddr>().is_ok() {
                    format!("IP:{n}")
                } else {
                    format!("DNS:{n}")
                }
            })
            .collect();
        self.issue(
            stem,
            names.first().copied().unwrap_or("server"),
            &format!(
                "subjectAltName={}\nbasicConstraints=CA:FALSE\n\
                 keyUsage=critical,digitalSignature,keyEncipherment\n\
                 extendedKeyUsage=serverAuth\n",
                alt.join(",")
            ),
        )
    }

    /// A client certificate (`stem.pem`, `stem.key`) named `name`.
    pub fn client(&self, stem: &str, name: &str) -> CertFiles {
        self.issue(
            stem,
            name,
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=clientAuth\n",
        )
    }

    /// The SHA-256 fingerprint of a certificate, lowercase hex without
    /// colons (as Atheme's `NickServ CERT ADD` takes it).
    pub fn fingerprint(cert: &Path) -> String {
        let out = openssl_output(
            cert.parent().expect("a directory"),
            &["x509", "-noout", "-fingerprint", "-sha256", "-in"],
            cert,
        );
        out.trim()
            .rsplit('=')
            .next()
            .expect("openssl prints NAME=FINGERPRINT")
            .replace(':', "")
            .to_ascii_lowercase()
    }

    fn issue(&self, stem: &str, common_name: &str, extensions: &str) -> CertFiles {
        let ext = format!("{stem}.ext");
        fs::write(self.dir.join(&ext), extensions).expect("write the extensions");
        let (key, csr, cert) = (
            format!("{stem}.key"),
            format!("{stem}.csr"),
            format!("{stem}.pem"),
        );
        openssl(
            &self.dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &format!("/CN={common_name}"),
            ],
        );
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &cert,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
        self.readable();
        CertFiles {
            cert: self.dir.join(cert),
            key: self.dir.join(key),
        }
    }

    fn readable(&self) {
        use std::os::unix::fs::PermissionsExt as _;
        for entry in fs::read_dir(&self.dir)
            .expect("list the CA's directory")
            .flatten()
        {
            let _ = fs::set_permissions(entry.path(), fs::Permissions::from_mode(0o644));
        }
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `openssl` ({e}): the TLS tests make their certificates with it; \
                 run `scripts/test` (it installs what is missing) or `apt-get install -y openssl`"
            )
        });
    assert!(
        out.status.success(),
        "openssl {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn openssl_output(dir: &Path, args: &[&str], file: &Path) -> String {
    let out = Command::new("openssl")
        .args(args)
        .arg(file)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl {args:?} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
