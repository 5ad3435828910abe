"""The identifiers of the other-style notes (`notes_other`), each kind in the forms hospitals print them."""

from __future__ import annotations

from typing import Any

__all__ = ["identifiers"]


def _phone(n: Any, label: str = "PHONE") -> None:
    a, b, c = f"{int(n.rng.integers(201, 989))}", n.digits(3), n.digits(4)
    k = int(n.rng.integers(4))
    if k == 0:
        n.put(f"+1 ({a}) {b}-{c}", label)
    elif k == 1:
        n.put("cell " if label == "PHONE" else "")
        n.put(f"{a} {b} {c}", label)
    elif k == 2:
        n.put(f"{a}-{b}-{c} ext. {n.digits(3)}", label)
    else:
        n.put(f"{a}.{b}.{c}", label)


def identifiers(n: Any, pat: dict[str, Any], kind: str) -> None:
    if kind == "age":
        age = pat["age"]
        form = n.pick(["{} y.o.", "aged {}", "{} yrs", "{}yo"])
        before, after = form.split("{}")
        n.put(before)
        n.put(str(age), "AGE" if age > 89 else None)
        n.put(after + n.pick([" F", " M", ""]))
    elif kind == "phone":
        _phone(n)
    elif kind == "vehicle":
        if n.rng.random() < 0.5:
            n.put("plate ")
            n.put(f"{int(n.rng.integers(1, 9))}{''.join(n.pick(list('ABCDEFGHJKLMNPRSTUVWXYZ')) for _ in range(3))}"
                  f"{n.digits(3)}", "VEHICLE")
        else:
            n.put("VIN ")
            n.put(f"1HG{''.join(n.pick(list('ABCDEFGHJKLMNPRSTUVWXYZ')) for _ in range(3))}{n.digits(5)}A"
                  f"{n.digits(6)}", "VEHICLE")
    elif kind == "address":
        n.put(n.pick(["Lives at ", "Address: ", "Home: "]))
        unit = n.pick(["", f", Apt {int(n.rng.integers(1, 30))}{n.pick(list('ABCD'))}",
                       f" Suite {int(n.rng.integers(100, 999))}"])
        n.put(f"{int(n.rng.integers(1, 9999))} {n.pick(['Birch Dr.', 'Harbor Blvd', 'Quarry Rd.', 'Chestnut Ave', 'Orchard Ln', 'Summit Parkway'])}{unit}", "STREET")  # noqa: E501
        city, state = pat["place"]
        n.put(", ")
        n.put(city, "CITY")
        n.put(f", {state} ")
        n.put(n.digits(5), "ZIP")
        n.put(".")
    elif kind == "ids":
        n.put(n.pick(["SSN ", "SS#: ", "Social Security No. "]))
        d = n.digits(9)
        n.put(n.pick([f"{d[:3]} {d[3:5]} {d[5:]}", d, f"{d[:3]}-{d[3:5]}-{d[5:]}"]), "SSN")
        n.put(n.pick(["; DL# ", "; driver's license "]))
        n.put(f"{n.pick(list('ABDFGKMS'))}{n.digits(3)}-{n.digits(4)}-{n.digits(4)}", "LICENSE")
        n.put("\n")
    elif kind == "license":
        n.put(n.pick(["NPI ", "DEA ", "lic. "]))
        n.put(n.pick([n.digits(10), f"{n.pick(list('ABFM'))}{n.pick(list('ABKRS'))}{n.digits(7)}",
                      f"{n.digits(2)}-{n.digits(5)}"]), "LICENSE")
    elif kind == "contact":
        n.put("Questions: call ")
        _phone(n)
        n.put(" or fax ")
        _phone(n, "FAX")
        n.put(", e-mail ")
        n.put(f"{pat['first'][0].lower()}{pat['last'].lower()}{n.digits(2)}@{n.pick(['gmail.com', 'yahoo.com', 'outlook.com'])}", "EMAIL")  # noqa: E501
        n.put(".\n")
    elif kind == "device":
        k = int(n.rng.integers(3))
        if k == 0:
            n.put("pacemaker UDI ")
            n.put(f"(01){n.digits(14)}", "DEVICE")
        elif k == 1:
            n.put("ICD serial #: ")
            n.put(f"{n.pick(['PJN', 'RDX', 'AZT'])}{n.digits(6)}", "DEVICE")
        else:
            n.put("insulin pump S/N ")
            n.put(f"{n.digits(2)}{n.pick(list('ABC'))}{n.digits(5)}", "DEVICE")
    elif kind == "web":
        host = pat["hospital"].split()[0].lower()
        n.put(n.pick([f"www.{host}health.org/mychart/{n.digits(6)}", f"https://mychart.{host}.org/pt/{n.digits(5)}"]),
              "URL")
        n.put(", workstation ")
        n.put(f"10.{int(n.rng.integers(0, 255))}.{int(n.rng.integers(0, 255))}.{int(n.rng.integers(1, 255))}", "IP")
    else:
        raise KeyError(kind)
