//! Kernel packages: a private apt configuration per Debian suite (lists,
//! cache and state under `target/vm/apt/<suite>/`), the suite's current
//! cloud kernel read from its meta-package, `apt-get download` and
//! `dpkg-deb -x` of `vmlinuz` and the kernel's config.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

use super::{vm_dir, Kernel, KernelVersion};
use crate::sh;

const MIRROR: &str = "http://deb.debian.org/debian";
const SECURITY_MIRROR: &str = "http://deb.debian.org/debian-security";
/// Holds the bullseye, bookworm and trixie signing keys (package
/// debian-archive-keyring).
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// Its candidate version depends on the suite's current cloud kernel image.
const META_PACKAGE: &str = "linux-image-cloud-amd64";

/// The kernel of `version`, downloaded (package lists, .deb, `vmlinuz`) into
/// `target/vm/` unless there already. To take a newer kernel, remove
/// `target/vm/kernels/<version>`.
pub fn ensure_kernel(ws: &Path, version: KernelVersion) -> Result<Kernel> {
    let dir = vm_dir(ws).join("kernels").join(version.as_str());
    if let Some(kernel) = cached_kernel(&dir, version) {
        println!("xtask: kernel {version} cached ({})", kernel.package);
        return Ok(kernel);
    }
    let apt = Apt::new(ws, version.suite())?;
    let mut fresh = false;
    if !apt.has_lists() {
        apt.update()?;
        fresh = true;
    }
    let (deb, package) = loop {
        let (name, pkg_version) = apt.resolve(version)?;
        match apt.download(&name, &pkg_version) {
            Ok(deb) => break (deb, format!("{name} {pkg_version}")),
            // Stale lists name a package the mirror no longer has.
            Err(e) if !fresh => {
                println!("xtask: {e:#}; refreshing the {} package lists", version.suite());
                apt.update()?;
                fresh = true;
            }
            Err(e) => return Err(e),
        }
    };
    extract_kernel(&deb, &package, &dir)?;
    let kernel = cached_kernel(&dir, version).with_context(|| format!("{} is incomplete", dir.display()))?;
    println!("xtask: kernel {version} ready: {} ({})", kernel.package, kernel.vmlinuz.display());
    Ok(kernel)
}

fn cached_kernel(dir: &Path, version: KernelVersion) -> Option<Kernel> {
    let read = |name: &str| fs::read_to_string(dir.join(name)).ok().map(|s| s.trim().to_string());
    let vmlinuz = dir.join("vmlinuz");
    if !vmlinuz.is_file() {
        return None;
    }
    Some(Kernel {
        version,
        release: read("release")?,
        package: read("package")?,
        vmlinuz,
        config: dir.join("config"),
    })
}

/// Takes `boot/vmlinuz-*` and `boot/config-*` out of the package into `dir`
/// (built aside, then renamed: an interrupted run leaves no half kernel).
fn extract_kernel(deb: &Path, package: &str, dir: &Path) -> Result<()> {
    let name = dir.file_name().context("kernel directory")?.to_string_lossy();
    let tmp = dir.with_file_name(format!("{name}.tmp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let unpacked = tmp.join("deb");
    sh(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&unpacked))?;
    let boot = unpacked.join("boot");
    let vmlinuz = fs::read_dir(&boot)
        .with_context(|| format!("{} has no boot/", deb.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("vmlinuz-"))
        .with_context(|| format!("no boot/vmlinuz-* in {}", deb.display()))?;
    let release = &vmlinuz["vmlinuz-".len()..];
    fs::rename(boot.join(&vmlinuz), tmp.join("vmlinuz"))?;
    fs::rename(boot.join(format!("config-{release}")), tmp.join("config"))
        .with_context(|| format!("no boot/config-{release} in {}", deb.display()))?;
    fs::write(tmp.join("release"), format!("{release}\n"))?;
    fs::write(tmp.join("package"), format!("{package}\n"))?;
    fs::remove_dir_all(&unpacked)?;
    let _ = fs::remove_dir_all(dir);
    fs::rename(&tmp, dir).with_context(|| format!("moving {} to {}", tmp.display(), dir.display()))
}

/// apt-get and apt-cache with a private configuration, lists and cache in
/// `target/vm/apt/<suite>/`; the .debs go to `target/vm/debs/`.
struct Apt {
    suite: &'static str,
    conf: PathBuf,
    lists: PathBuf,
    debs: PathBuf,
}

impl Apt {
    fn new(ws: &Path, suite: &'static str) -> Result<Self> {
        if !Path::new(KEYRING).is_file() {
            bail!("{KEYRING} is missing: install the debian-archive-keyring package");
        }
        let dir = vm_dir(ws).join("apt").join(suite);
        let lists = dir.join("state/lists");
        let debs = vm_dir(ws).join("debs");
        for d in [lists.join("partial"), dir.join("cache/archives/partial"), dir.join("empty"), debs.clone()]
        {
            fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        }
        let status = dir.join("state/status");
        if !status.exists() {
            fs::write(&status, "")?;
        }
        let sources: String = [
            (MIRROR, suite.to_string()),
            (MIRROR, format!("{suite}-updates")),
            (SECURITY_MIRROR, format!("{suite}-security")),
        ]
        .iter()
        .map(|(mirror, s)| format!("deb [signed-by={KEYRING}] {mirror} {s} main\n"))
        .collect();
        fs::write(dir.join("sources.list"), sources)?;
        // APT_CONFIG is read before anything else: it points apt away from
        // /etc/apt (its apt.conf.d hooks included) and /var/lib/apt.
        let d = dir.display();
        let conf = format!(
            "// Written by xtask/src/vm.rs: private apt configuration for downloading kernels\n\
             // (lists kept compressed, no binary caches: about 20 MB a suite).\n\
             Dir::Etc::main \"/dev/null\";\n\
             Dir::Etc::parts \"{d}/empty\";\n\
             Dir::Etc::sourcelist \"{d}/sources.list\";\n\
             Dir::Etc::sourceparts \"{d}/empty\";\n\
             Dir::Etc::preferences \"{d}/empty/preferences\";\n\
             Dir::Etc::preferencesparts \"{d}/empty\";\n\
             Dir::Etc::trusted \"{d}/empty/trusted.gpg\";\n\
             Dir::Etc::trustedparts \"{d}/empty\";\n\
             Dir::State \"{d}/state\";\n\
             Dir::State::lists \"{d}/state/lists\";\n\
             Dir::State::status \"{d}/state/status\";\n\
             Dir::Cache \"{d}/cache\";\n\
             Dir::Log \"{d}/log\";\n\
             APT::Architecture \"amd64\";\n\
             APT::Architectures {{ \"amd64\"; }};\n\
             Acquire::Languages \"none\";\n\
             Acquire::GzipIndexes \"true\";\n\
             Dir::Cache::pkgcache \"\";\n\
             Dir::Cache::srcpkgcache \"\";\n\
             APT::Sandbox::User \"root\";\n"
        );
        let conf_path = dir.join("apt.conf");
        fs::write(&conf_path, conf)?;
        Ok(Apt { suite, conf: conf_path, lists, debs })
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("APT_CONFIG", &self.conf);
        c
    }

    fn has_lists(&self) -> bool {
        fs::read_dir(&self.lists)
            .map(|d| d.filter_map(|e| e.ok()).any(|e| e.file_name().to_string_lossy().contains("_Packages")))
            .unwrap_or(false)
    }

    fn update(&self) -> Result<()> {
        println!("xtask: downloading the {} package lists", self.suite);
        sh(self.command("apt-get").args(["update", "-qq"]))
    }

    /// The current cloud kernel image of the suite (security updates
    /// included), as (package, version), read from the meta-package's
    /// dependency rather than hard-coded: old ABIs leave the mirrors.
    fn resolve(&self, version: KernelVersion) -> Result<(String, String)> {
        let out = self
            .command("apt-cache")
            .args(["show", "--no-all-versions", META_PACKAGE])
            .output()
            .context("running apt-cache")?;
        if !out.status.success() {
            bail!("apt-cache show {META_PACKAGE} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        let text = String::from_utf8_lossy(&out.stdout);
        exact_image_dependency(&text, version).with_context(|| format!("{META_PACKAGE} in {}", self.suite))
    }

    fn download(&self, name: &str, pkg_version: &str) -> Result<PathBuf> {
        let deb = self.debs.join(format!("{name}_{}_amd64.deb", pkg_version.replace(':', "%3a")));
        if deb.is_file() {
            println!("xtask: {} cached", deb.display());
            return Ok(deb);
        }
        println!("xtask: downloading {name} {pkg_version}");
        sh(self.command("apt-get").current_dir(&self.debs).args([
            "download",
            "-qq",
            &format!("{name}={pkg_version}"),
        ]))?;
        if !deb.is_file() {
            bail!("apt-get download did not leave {}", deb.display());
        }
        Ok(deb)
    }
}

/// The stanzas of a deb822 text (a `Packages` index, what `apt-cache show`
/// prints): blocks separated by blank lines.
fn stanzas(text: &str) -> impl Iterator<Item = &str> {
    text.split("\n\n").map(|s| s.trim_matches('\n')).filter(|s| !s.trim().is_empty())
}

/// The value of `name` in one stanza: field names are case-insensitive,
/// continuation lines (starting with a space or a tab) are joined with a
/// space.
fn field(stanza: &str, name: &str) -> Option<String> {
    let mut lines = stanza.lines();
    while let Some(line) = lines.next() {
        let Some((key, value)) = line.split_once(':') else { continue };
        if line.starts_with([' ', '\t']) || !key.eq_ignore_ascii_case(name) {
            continue;
        }
        let mut value = value.trim().to_string();
        for more in lines.by_ref().take_while(|l| l.starts_with([' ', '\t'])) {
            value.push(' ');
            value.push_str(more.trim());
        }
        return Some(value);
    }
    None
}

/// The kernel image of `version` that the meta-package's stanza depends on
/// exactly: (package, version), e.g. ("linux-image-6.1.0-56-cloud-amd64",
/// "6.1.192-2").
fn exact_image_dependency(text: &str, version: KernelVersion) -> Result<(String, String)> {
    let stanza = stanzas(text)
        .find(|s| field(s, "Package").as_deref() == Some(META_PACKAGE))
        .with_context(|| format!("no {META_PACKAGE} stanza in the package index"))?;
    let depends = field(stanza, "Depends").context("it has no Depends")?;
    let prefix = format!("linux-image-{version}.");
    for dep in depends.split(',') {
        // "linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)"
        let dep = dep.trim();
        let name = dep.split_whitespace().next().unwrap_or_default();
        if !name.starts_with(&prefix) {
            continue;
        }
        let pkg_version = dep
            .split_once("(=")
            .and_then(|(_, v)| v.split_once(')'))
            .map(|(v, _)| v.trim().to_string())
            .with_context(|| format!("no exact version in `{dep}`"))?;
        return Ok((name.to_string(), pkg_version));
    }
    bail!("it does not depend on a {prefix}* image: {depends}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Packages` index excerpt as Debian publishes it (bookworm, with
    /// the meta-package second and a wrapped field).
    const BOOKWORM: &str = "\
Package: linux-headers-cloud-amd64
Source: linux-signed-amd64 (6.1.192+2)
Version: 6.1.192-2
Depends: linux-headers-6.1.0-56-cloud-amd64 (= 6.1.192-2)

Package: linux-image-cloud-amd64
Source: linux-signed-amd64 (6.1.192+2)
Version: 6.1.192-2
Installed-Size: 13
Depends: linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)
Description: Linux for x86-64 cloud (meta-package)
 This package depends on the latest Linux kernel and modules for use on
 cloud platforms.
Section: kernel
Priority: optional

";

    #[test]
    fn the_exact_image_is_read_from_the_meta_package() {
        let (name, version) = exact_image_dependency(BOOKWORM, KernelVersion::V6_1).expect("an image");
        assert_eq!((name.as_str(), version.as_str()), ("linux-image-6.1.0-56-cloud-amd64", "6.1.192-2"));
    }

    #[test]
    fn a_dependency_list_wrapped_over_lines_with_other_packages_is_searched() {
        // As `apt-cache show` prints it: one stanza, no trailing blank line;
        // lower-case field name, the image neither first nor on the first line.
        let text = "Package: linux-image-cloud-amd64\nVersion: 6.12.117-1\ndepends: dummy (>= 1),\n \
                    linux-image-6.12.117+deb13-cloud-amd64 (= 6.12.117-1)\nSection: kernel";
        let (name, version) = exact_image_dependency(text, KernelVersion::V6_12).expect("an image");
        assert_eq!(
            (name.as_str(), version.as_str()),
            ("linux-image-6.12.117+deb13-cloud-amd64", "6.12.117-1")
        );
    }

    #[test]
    fn a_meta_package_without_the_image_says_what_it_depends_on() {
        // bookworm's meta-package asked for 5.10's image.
        let e = exact_image_dependency(BOOKWORM, KernelVersion::V5_10).expect_err("not 5.10");
        let msg = format!("{e:#}");
        assert!(
            msg.contains("linux-image-5.10.*") && msg.contains("linux-image-6.1.0-56-cloud-amd64"),
            "{msg}"
        );
        let e = exact_image_dependency(
            "Package: linux-image-cloud-amd64\nDepends: linux-image-6.1.0-1-cloud-amd64\n",
            KernelVersion::V6_1,
        )
        .expect_err("no exact version");
        assert!(format!("{e:#}").contains("no exact version"), "{e:#}");
        let e = exact_image_dependency("Package: other\nDepends: x\n", KernelVersion::V6_1)
            .expect_err("no stanza");
        assert!(format!("{e:#}").contains("no linux-image-cloud-amd64 stanza"), "{e:#}");
    }

    #[test]
    fn fields_are_read_with_their_continuation_lines_and_only_whole_names_match() {
        let stanza = "Package: p\nPre-Depends: a\nDescription: short\n long one\n\tand tab\nDepends: b";
        assert_eq!(field(stanza, "depends").as_deref(), Some("b"));
        assert_eq!(field(stanza, "Pre-Depends").as_deref(), Some("a"));
        assert_eq!(field(stanza, "Description").as_deref(), Some("short long one and tab"));
        assert_eq!(field(stanza, "Version"), None);
        assert_eq!(stanzas(BOOKWORM).count(), 2);
    }
}
