"""Random custody histories across three Participants, checked after every step.

A hypothesis state machine mines, splits, merges, exports, imports and voids on the logs
of Botswana, the EU and India (certificates travel only as proofs), and also tries the
breaches a clerk could attempt (reusing exported parcels, a second import). After every
step: carats are conserved network-wide, no parcel is in two custodies, no certificate is
imported twice, and each node's stored indexes equal a fresh replay of its log.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ledger import rules
from ledger.checkpoint import TlogProof
from ledger.custody import Custody
from ledger.datadir import DataDir
from ledger.records import (
    ActorRegister,
    Export,
    ExportVoid,
    ParcelMerge,
    ParcelMine,
    ParcelShare,
    ParcelSplit,
)
from ledger.roster import Participant, Roster

NET = "kp.example"
CODES = ("BW", "EU", "IN")
COUNTRIES = {"BW": ("BW",), "EU": ("BE", "DE"), "IN": ("IN",)}
MINING = ("BW", "IN")


@dataclass
class Shipment:
    """A certificate in the model: who sent it, where to, what it weighs, and what became of it."""

    number: str
    sender: str
    destination: str
    carats: int
    parcels: tuple[str, ...]
    index: int
    proof: TlogProof
    state: str = "awaiting"  # "awaiting" | "imported" | "voided"
    received: int = 0


@dataclass
class Model:
    """What the network should hold: parcels in custody per node, shipments, carats lost."""

    custody: dict[str, dict[str, int]] = field(default_factory=lambda: {c: {} for c in CODES})
    shipments: dict[str, Shipment] = field(default_factory=dict)
    mined: int = 0
    lost: int = 0
    serial: int = 0


class CustodyNetwork(RuleBasedStateMachine):
    """Three nodes under one roster, driven by random custody records."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="custody-machine-"))
        self.dirs = {c: DataDir.init(self.tmp / c, c, NET) for c in CODES}
        roster = Roster(
            NET,
            1,
            tuple(
                Participant(
                    c,
                    f"Authority of {c}",
                    COUNTRIES[c],
                    d.signer.verifier,
                    f"https://{c.lower()}.kp.example/",
                )
                for c, d in self.dirs.items()
            ),
        )
        self.nodes = {c: Custody(d, roster) for c, d in self.dirs.items()}
        for code, node in self.nodes.items():
            node.append_many(
                ActorRegister(
                    f"{code}-{role.upper()}",
                    role,
                    f"{code} {role}",
                    "L-1",
                    "Capital",
                    f"{code} zone",
                )
                for role in ("mine", "exporter", "importer")
            )
        self.model = Model()

    def teardown(self) -> None:
        for d in self.dirs.values():
            d.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _new_id(self, code: str) -> str:
        self.model.serial += 1
        return f"{code}-P{self.model.serial}"

    def _held(self, code: str, data: st.DataObject, n: int) -> list[str]:
        held = sorted(self.model.custody[code])
        return data.draw(st.lists(st.sampled_from(held), min_size=n, max_size=n, unique=True))

    # -- legal steps -----------------------------------------------------------------

    @rule(code=st.sampled_from(MINING), weight=st.integers(2, 10_000_00))
    def mine(self, code: str, weight: int) -> None:
        parcel = self._new_id(code)
        record = ParcelMine(parcel, f"{code}-MINE", weight, weight * 3, "2026-03-01", code)
        self.nodes[code].append(record)
        self.model.custody[code][parcel] = weight
        self.model.mined += weight

    @rule(code=st.sampled_from(CODES), data=st.data(), parts=st.integers(2, 4))
    def split(self, code: str, data: st.DataObject, parts: int) -> None:
        held = self.model.custody[code]
        big = [p for p, w in held.items() if w >= parts]
        if not big:
            return
        source = data.draw(st.sampled_from(sorted(big)))
        weight = held.pop(source)
        cut = st.lists(
            st.integers(1, weight - 1), min_size=parts - 1, max_size=parts - 1, unique=True
        )
        bounds = [0, *sorted(data.draw(cut)), weight]
        outputs = tuple(
            ParcelShare(self._new_id(code), hi - lo, hi - lo)
            for lo, hi in itertools.pairwise(bounds)
        )
        self.nodes[code].append(ParcelSplit(source, outputs))
        held.update({s.parcel: s.carats for s in outputs})

    @precondition(lambda self: any(len(h) >= 2 for h in self.model.custody.values()))
    @rule(data=st.data())
    def merge(self, data: st.DataObject) -> None:
        code = data.draw(st.sampled_from([c for c in CODES if len(self.model.custody[c]) >= 2]))
        inputs = self._held(
            code, data, data.draw(st.integers(2, min(3, len(self.model.custody[code]))))
        )
        weight = sum(self.model.custody[code].pop(p) for p in inputs)
        output = ParcelShare(self._new_id(code), weight, 7)
        self.nodes[code].append(ParcelMerge(tuple(inputs), output))
        self.model.custody[code][output.parcel] = weight

    @precondition(lambda self: any(self.model.custody.values()))
    @rule(data=st.data())
    def export(self, data: st.DataObject) -> None:
        code = data.draw(st.sampled_from([c for c in CODES if self.model.custody[c]]))
        dest = data.draw(st.sampled_from([c for c in CODES if c != code]))
        parcels = self._held(
            code, data, data.draw(st.integers(1, min(3, len(self.model.custody[code]))))
        )
        node = self.nodes[code]
        origins = sorted({o for p in parcels for o in (node.parcel(p) or _gone(p)).origins})
        self.model.serial += 1
        number = f"{code}-2026-{self.model.serial:06d}"
        weight = sum(self.model.custody[code][p] for p in parcels)
        record = Export(
            number,
            "KP Authority",
            f"{code}-EXPORTER",
            "buyer",
            dest,
            tuple(parcels),
            weight,
            1000,
            len(parcels),
            "7102.31",
            tuple(origins),
            "2026-03-05",
            "2026-06-05",
            "S-1",
        )
        done = node.append(record)
        for p in parcels:
            del self.model.custody[code][p]
        proof = node.export_proof(number)
        self.model.shipments[number] = Shipment(
            number, code, dest, weight, tuple(parcels), done.index, proof
        )

    def _awaiting(self) -> list[Shipment]:
        return [s for s in self.model.shipments.values() if s.state == "awaiting"]

    @precondition(lambda self: bool(self._awaiting()))
    @rule(data=st.data(), short=st.integers(0, 3))
    def import_(self, data: st.DataObject, short: int) -> None:
        ship = data.draw(st.sampled_from(self._awaiting()))
        received = max(1, ship.carats - short)
        note = None if received == ship.carats else f"{ship.carats - received} short"
        self.nodes[ship.destination].import_certificate(
            ship.proof,
            importer=f"{ship.destination}-IMPORTER",
            received="2026-03-09",
            carats=received,
            discrepancy=note,
        )
        ship.state, ship.received = "imported", received
        self.model.custody[ship.destination][ship.number] = received
        self.model.lost += ship.carats - received

    @precondition(lambda self: bool(self._awaiting()))
    @rule(data=st.data())
    def void(self, data: st.DataObject) -> None:
        ship = data.draw(st.sampled_from(self._awaiting()))
        self.nodes[ship.sender].append(ExportVoid(ship.number, ship.index, "buyer withdrew"))
        ship.state = "voided"
        for p in ship.parcels:
            state = self.nodes[ship.sender].parcel(p)
            assert state is not None
            self.model.custody[ship.sender][p] = state.carats

    # -- breaches, refused ------------------------------------------------------------

    @precondition(lambda self: any(s.state == "imported" for s in self.model.shipments.values()))
    @rule(data=st.data())
    def import_twice(self, data: st.DataObject) -> None:
        done = [s for s in self.model.shipments.values() if s.state == "imported"]
        ship = data.draw(st.sampled_from(done))
        with pytest.raises(rules.CertificateAlreadyImported):
            self.nodes[ship.destination].import_certificate(
                ship.proof, importer=f"{ship.destination}-IMPORTER", received="2026-03-10"
            )

    @precondition(lambda self: bool(self.model.shipments))
    @rule(data=st.data())
    def reuse_exported_parcels(self, data: st.DataObject) -> None:
        ship = data.draw(
            st.sampled_from(sorted(self.model.shipments.values(), key=lambda s: s.number))
        )
        if ship.state == "voided":
            return
        sender = self.nodes[ship.sender]
        outputs = (ParcelShare("Z1", 1, 1), ParcelShare("Z2", 1, 1))
        with pytest.raises(rules.ParcelNotInCustody):
            sender.append(ParcelSplit(ship.parcels[0], outputs))

    # -- invariants --------------------------------------------------------------------

    @invariant()
    def custody_matches_the_model_and_carats_are_conserved(self) -> None:
        held = {c: {p.parcel: p.carats for p in n.in_custody()} for c, n in self.nodes.items()}
        assert held == self.model.custody
        in_transit = sum(s.carats for s in self._awaiting())
        total = sum(sum(h.values()) for h in held.values())
        assert total + in_transit + self.model.lost == self.model.mined

    @invariant()
    def no_parcel_in_two_custodies_and_no_double_import(self) -> None:
        ids = [p for h in self.model.custody.values() for p in h]
        assert len(ids) == len(set(ids))
        for ship in self.model.shipments.values():
            sender = self.nodes[ship.sender]
            states = [sender.parcel(p) for p in ship.parcels]
            if ship.state != "voided":
                assert all(s is not None and s.status == "exported" for s in states)
            imported_at = [
                c
                for c, n in self.nodes.items()
                if (cert := n.certificate(ship.number)) and cert.status == "imported"
            ]
            assert imported_at == ([ship.destination] if ship.state == "imported" else [])

    @invariant()
    def stored_indexes_equal_a_fresh_replay(self) -> None:
        for node in self.nodes.values():
            assert node.stored_indexes() == node.replay_indexes()


def _gone(parcel: str) -> rules.ParcelState:
    raise AssertionError(f"model holds {parcel} but the node does not")


CustodyNetwork.TestCase.settings = settings(max_examples=15, stateful_step_count=20, deadline=None)
TestCustodyNetwork = CustodyNetwork.TestCase
TestCustodyNetwork.__doc__ = (
    "Random histories keep carats, custody, imports and indexes consistent."
)
